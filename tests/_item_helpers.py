"""Functions that pool and executor workers run in tests/test_item_errors.py and
tests/test_progress.py (importable under spawn and forkserver)."""

from __future__ import annotations

_state: dict = {}


class ArgsError(Exception):
    """An exception whose arguments are not one string (kept as they are)."""


def square(x):
    """x * x (a string comes back as it is); raises ValueError for 17 and for 'abc'."""
    if x == 17 or x == "abc":
        raise ValueError(f"cannot square {x!r}")
    return x * x if isinstance(x, int) else x


def add(a, b):
    """a + b; raises KeyError for a == 13."""
    if a == 13:
        raise KeyError(a)
    return a + b


def raise_args_error(x):
    """Raise ArgsError(x, 'two') for 5, else return x."""
    if x == 5:
        raise ArgsError(x, "two")
    return x


def fail_long(x):
    """Raise for any item (the test passes one with a long repr)."""
    raise ValueError("too long")


def identity(x):
    return x


def init_event(event):
    _state["event"] = event


def wait_for_event(x):
    """Wait (up to 60 s) until the test sets the initializer's event, then return x."""
    if not _state["event"].wait(60):
        raise AssertionError("wait_for_event(): the test never set the event")
    return x


class Recorder:
    """A progress callable that records each (done, total) it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, done, total):
        self.calls.append((done, total))

    @property
    def counts(self):
        return [done for done, _total in self.calls]


class FakeBar:
    """A tqdm-like object: update(n), total, close()."""

    def __init__(self, total=None, desc=None):
        self.total = total
        self.desc = desc
        self.n = 0
        self.updates = []
        self.closed = False

    def update(self, n=1):
        self.updates.append(n)
        self.n += n

    def close(self):
        self.closed = True


def plus(a, b):
    return a + b


def die_or_raise(x):
    """The worker kills itself (SIGKILL) for 2; ValueError for 5; x otherwise."""
    import os
    import signal

    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 5:
        raise ValueError("five")
    return x
