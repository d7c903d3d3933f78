"""``get_reusable_executor``: one process-wide executor, reused across calls (layer 5).

Notebooks and libraries that parallelize many small calls should not pay a
pool start for each.  ``get_reusable_executor()`` hands back the executor
it made last time while that one is usable and was asked for with the same
start method, serializer, initializer, ``max_tasks_per_child`` and task
limits:

- a larger ``max_workers`` grows it in place (workers start as calls need
  them, or at once under fork);
- a smaller one, other settings, or an executor that was shut down or broke
  (its initializer raised) get a new executor.  The old one is shut down
  without waiting: calls already submitted to it still run to the end, unless
  ``kill_workers=True`` stops them at once.

A forked child does not inherit its parent's executor (whose coordinator
thread does not exist there): its first call makes its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from . import context as _context
from .pool._pool import _serializer_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    from .futures import ProcessPoolExecutor  # which imports this module

__all__ = ["get_reusable_executor"]

_lock = threading.Lock()
_current: ProcessPoolExecutor | None = None
_current_key: tuple | None = None
_current_pid: int | None = None


def get_reusable_executor(
    max_workers: int | None = None,
    mp_context: Any = None,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    *,
    max_tasks_per_child: int | None = None,
    task_timeout: float | None = None,
    max_memory_per_child: int | str | None = None,
    memory_limit: int | str | None = None,
    kill_workers: bool = False,
) -> ProcessPoolExecutor:
    """Return the process-wide :class:`ProcessPoolExecutor`, made or adapted to these settings.

    The arguments are :class:`ProcessPoolExecutor`'s.  The executor of the
    last call is returned while it is usable and ``mp_context``,
    ``initializer``, ``initargs``, ``max_tasks_per_child`` and the task
    limits (``task_timeout``, ``max_memory_per_child``, ``memory_limit``) are the same
    (the context compared by start method and serializer, the initializer
    and its arguments by identity); a larger ``max_workers`` grows it.
    Otherwise, or if it was shut down or broken, a new one replaces it and
    the old one is shut down without waiting (its submitted calls still run)
    or, with ``kill_workers=True``, has its workers killed at once (its
    running calls fail).

    Calling ``shutdown()`` on the returned executor is allowed: the next call
    makes a new one.  Do not use ``with get_reusable_executor() as ex:``
    when you mean to reuse it, since leaving the block shuts it down.

    Raises:
        ValueError, TypeError: as :class:`ProcessPoolExecutor` does for the
            same arguments.
    """
    from .futures import ProcessPoolExecutor, _default_max_workers

    global _current, _current_key, _current_pid
    if max_workers is None:
        max_workers = _default_max_workers()
    elif not isinstance(max_workers, int) or isinstance(max_workers, bool):
        raise TypeError(f"max_workers must be an int or None, not {type(max_workers).__name__}")
    elif max_workers <= 0:
        raise ValueError("max_workers must be greater than 0")
    if mp_context is None:
        mp_context = _context._default_context.get_context("spawn" if max_tasks_per_child else None)
    initargs = tuple(initargs)
    key = (
        mp_context.get_start_method(allow_none=False),
        _serializer_of(mp_context).name,
        _identity(initializer),
        tuple(_identity(arg) for arg in initargs),
        max_tasks_per_child,
        task_timeout,
        max_memory_per_child,
        memory_limit,
    )
    with _lock:
        old = _current if _current_pid == os.getpid() else None
        if old is not None and _usable(old) and key == _current_key:
            if max_workers == old._max_workers:
                return old
            if max_workers > old._max_workers:
                old._grow(max_workers)
                return old
        executor = ProcessPoolExecutor(
            max_workers,
            mp_context,
            initializer,
            initargs,
            max_tasks_per_child=max_tasks_per_child,
            task_timeout=task_timeout,
            max_memory_per_child=max_memory_per_child,
            memory_limit=memory_limit,
        )
        _current, _current_key, _current_pid = executor, key, os.getpid()
    if old is not None:
        if kill_workers:
            old.kill_workers()
        else:
            old.shutdown(wait=False)
    return executor


def _identity(obj: Any) -> Any:
    # Hashable objects compare by value (equal numbers, strings); others by identity.
    try:
        hash(obj)
    except TypeError:
        return ("id", id(obj))
    return ("value", type(obj), obj)


def _usable(executor: ProcessPoolExecutor) -> bool:
    return not executor._shutdown_called and executor._coordinator.broken is None
