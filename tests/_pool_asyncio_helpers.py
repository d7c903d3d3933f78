"""Functions that pool workers run in tests/test_pool_asyncio.py (importable under spawn)."""

from __future__ import annotations

_state: dict = {}


def init_sync(started, go, ran):
    """Initializer: keep the test's events and counter (shared by inheritance)."""
    _state["started"], _state["go"], _state["ran"] = started, go, ran


def announce_then_wait(x):
    """Tell the test this task runs, wait for its go, count the run, return x."""
    _state["started"].set()
    if not _state["go"].wait(60):
        raise AssertionError("the test never said go")
    count_run()
    return x


def count_run(x=None):
    """Count one run in the shared counter; return x."""
    ran = _state["ran"]
    with ran.get_lock():
        ran.value += 1
    return x


def item_0_waits(x):
    """Item 0 waits for the test's go; item 1 says it ran (started) and returns at once."""
    if x == 0:
        if not _state["go"].wait(60):
            raise AssertionError("the test never said go")
    else:
        _state["started"].set()
    return x * 10


def fail_on_odd(x):
    if x % 2:
        raise KeyError(f"odd item {x}")
    return x * x
