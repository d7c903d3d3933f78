"""Functions that executor workers run in tests/test_futures.py (importable under spawn)."""

from __future__ import annotations

_events: dict = {}


def init_events(started, release):
    """Initializer: keep the test's two events (they cross only at process start)."""
    _events["started"] = started
    _events["release"] = release


def block(x):
    """Say this task started, wait until the test releases it, return x."""
    _events["started"].set()
    if not _events["release"].wait(60):
        raise AssertionError("block(): the test never released this task")
    return x


class Dummy:
    """A result whose lifetime a test watches through a weak reference."""

    def __init__(self, x):
        self.x = x


def init_barrier(barrier):
    _events["barrier"] = barrier


def meet(x):
    """Return x once as many calls as the barrier's parties run at the same time."""
    _events["barrier"].wait(60)
    return x


class ExitAtPickle:
    """A result whose pickling raises SystemExit (in the worker, sending it back)."""

    def __reduce__(self):
        raise SystemExit(7)


def exit_at_pickle(_=None):
    return ExitAtPickle()


def exit_with(code):
    import sys

    sys.exit(code)


class ExitAtUnpickle:
    """An argument whose unpickling (in the worker) raises SystemExit."""

    def __reduce__(self):
        return exit_with, (5,)


def block_or_die(x, die):
    """As block(x); then, if ``die``, end the worker abruptly (exit status 3)."""
    block(x)
    if die:
        import os

        os._exit(3)
    return x
