"""Functions that children run in tests/test_reusable_executor.py (importable under spawn)."""

from __future__ import annotations

import os

_state: dict = {}


def remember(value):
    """Initializer: keep ``value`` for ``recalled``."""
    _state["value"] = value


def recalled(_):
    return _state.get("value")


def fail_init():
    raise ValueError("this initializer always fails")


def pid(_=None):
    return os.getpid()


def reusable_in_child(queue, method):
    """In a child: the executor the child gets, and whether it works there."""
    import multiprocess
    from multiprocess.futures import get_reusable_executor

    ctx = multiprocess.get_context(method)
    executor = get_reusable_executor(1, mp_context=ctx)
    again = get_reusable_executor(1, mp_context=ctx)
    try:
        queue.put((id(executor), executor is again, executor.submit(pow, 3, 2).result(60)))
    finally:
        executor.shutdown()
