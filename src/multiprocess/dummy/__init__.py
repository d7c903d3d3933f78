"""multiprocess.dummy: the multiprocess API on threads instead of processes.

Useful to switch code between processes and threads by changing one import.
Synchronization primitives and queues are the ``threading`` and ``queue`` ones;
``Pool`` is ``multiprocess.pool.ThreadPool``.
"""

from __future__ import annotations

import array
import sys
import threading
import weakref
from collections.abc import Iterable
from queue import Queue
from threading import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore
from typing import TYPE_CHECKING, Any, Callable

from . import connection as connection
from .connection import Pipe

if TYPE_CHECKING:
    from ..pool import ThreadPool

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "Queue",
    "RLock",
    "Semaphore",
    "active_children",
    "current_process",
    "freeze_support",
]

JoinableQueue = Queue


class DummyProcess(threading.Thread):
    """A thread with the Process API (``exitcode``, children tracking)."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: dict | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs or {})
        self._pid = None
        self._children: weakref.WeakKeyDictionary[Any, None] = weakref.WeakKeyDictionary()
        self._start_called = False
        self._parent = current_process()

    def start(self) -> None:
        if self._parent is not current_process():
            raise RuntimeError(
                f"Parent is {self._parent!r} but current_process is {current_process()!r}"
            )
        self._start_called = True
        children = getattr(self._parent, "_children", None)
        if children is not None:
            children[self] = None
        super().start()

    @property
    def exitcode(self) -> int | None:
        """0 once the thread has finished, None before."""
        if self._start_called and not self.is_alive():
            return 0
        return None


Process = DummyProcess
current_process = threading.current_thread
current_process()._children = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]


def active_children() -> list:
    """Return the threads started from this thread that are still running."""
    children = getattr(current_process(), "_children", None)
    if children is None:
        return []
    for p in list(children):
        if not p.is_alive():
            children.pop(p, None)
    return list(children)


def freeze_support() -> None:
    pass


class Namespace:
    """A bag of attributes (what ``Manager().Namespace()`` returns)."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = [f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_")]
        return f"{type(self).__name__}({', '.join(sorted(items))})"


dict = dict  # noqa: PLW0127 - the "manager" types are the plain ones
list = list  # noqa: PLW0127


def Array(typecode: str, sequence: Iterable[Any], lock: Any = True) -> array.array:
    """Return an ``array.array`` (threads share memory already)."""
    return array.array(typecode, sequence)


class Value:
    """A boxed value with a ``value`` attribute (threads share memory already)."""

    def __init__(self, typecode: str, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._typecode!r}, {self._value!r})>"


def Manager() -> Any:
    """The thread "manager" is this module itself: its types are the plain ones."""
    return sys.modules[__name__]


def shutdown() -> None:
    pass


def Pool(
    processes: int | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
) -> ThreadPool:
    """Return a ``ThreadPool``: a Pool whose workers are threads."""
    from ..pool import ThreadPool

    return ThreadPool(processes, initializer, initargs)
