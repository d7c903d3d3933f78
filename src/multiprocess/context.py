"""Contexts: one object per start method, the factory of everything (layer 3).

A context is a start-method strategy: its ``Process`` class names the launcher
that starts children (``popen_fork``, ``popen_spawn_posix``,
``popen_forkserver``), and its factory methods (``Queue()``, ``Lock()``,
``Pool()``...) build objects bound to it.  ``DefaultContext`` defers to the
start method chosen with ``set_start_method`` (or the platform default) the
first time it is needed.

Each context also names the serializer its Pipes and children use
(``set_serializer``); None means ``MULTIPROCESS_SERIALIZER`` or ``'dill'``.

The factories import the layer-4 and layer-5 modules when they are called:
those modules build on this one, not the other way round.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Sequence
    from typing import Any, Callable, ClassVar, Literal, TypeVar, Union, overload

from . import process, reduction, util
from ._errors import (
    AuthenticationError,
    BufferTooShort,
    ProcessError,
    TaskTimeoutError,
    TimeoutError,
)
from ._spawning import assert_spawning, get_spawning_popen, set_spawning_popen

if TYPE_CHECKING:  # annotations only: these modules build on this one
    import ctypes
    from _ctypes import _CData
    from ctypes import _SimpleCData, c_char

    from . import queues, synchronize
    from .connection import Connection
    from .futures import ProcessPoolExecutor
    from .managers import SyncManager
    from .pool import Pool
    from .sharedctypes import Synchronized, SynchronizedArray, SynchronizedString

    _LockLike = Union[synchronize.Lock, synchronize.RLock]
    _CT = TypeVar("_CT", bound=_CData)
    _T = TypeVar("_T")

__all__ = [
    "AuthenticationError",
    "BaseContext",
    "BufferTooShort",
    "DefaultContext",
    "ForkContext",
    "ForkProcess",
    "ForkServerContext",
    "ForkServerProcess",
    "Process",
    "ProcessError",
    "SpawnContext",
    "SpawnProcess",
    "TaskTimeoutError",
    "TimeoutError",
    "assert_spawning",
    "get_spawning_popen",
    "set_spawning_popen",
]


class BaseContext:
    """The API of the ``multiprocess`` package, bound to one start method."""

    _name: str | None = None
    _serializer: str | None = None
    # Set by each concrete context (and DefaultContext): its Process class.
    Process: ClassVar[type[process.BaseProcess]]

    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError
    TaskTimeoutError = TaskTimeoutError

    @property
    def MemoryLimitError(self) -> type:
        """The pool's :class:`multiprocess.pool.MemoryLimitError` (imported on first use)."""
        from .pool import MemoryLimitError

        return MemoryLimitError

    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)
    active_children = staticmethod(process.active_children)

    def cpu_count(self) -> int:
        """Return the number of CPUs in the system."""
        num = os.cpu_count()
        if num is None:
            raise NotImplementedError("cannot determine number of cpus")
        return num

    # -- serialization ---------------------------------------------------

    def get_serializer(self) -> str:
        """Name of the serializer this context's channels use ('dill' by default)."""
        return reduction.get_serializer(self.get_context()._serializer).name

    def set_serializer(self, name: str | None) -> None:
        """Choose the serializer of this context: 'dill', 'pickle' or 'cloudpickle'.

        None restores the default (``MULTIPROCESS_SERIALIZER``, else 'dill').
        """
        if name is not None:
            reduction.get_serializer(name)  # raises ValueError for unknown names
        self.get_context()._serializer = name

    @property
    def reducer(self) -> ModuleType:
        """The reduction module used to pickle objects between processes."""
        return reduction

    @reducer.setter
    def reducer(self, reducer: Any) -> None:
        raise ValueError(
            "replacing the reduction module is not supported; "
            "use set_serializer('dill' | 'pickle' | 'cloudpickle') instead"
        )

    # -- channels and shared state (layer 4) -----------------------------

    def Pipe(self, duplex: bool = True) -> tuple[Connection[Any, Any], Connection[Any, Any]]:
        """Return a pair of connected Connection objects."""
        from .connection import Pipe

        return Pipe(duplex, serializer=self.get_context()._serializer)

    def Lock(self) -> synchronize.Lock:
        """Return a non-recursive lock shared between processes."""
        from .synchronize import Lock

        return Lock(ctx=self.get_context())

    def RLock(self) -> synchronize.RLock:
        """Return a recursive lock shared between processes."""
        from .synchronize import RLock

        return RLock(ctx=self.get_context())

    def Condition(self, lock: _LockLike | None = None) -> synchronize.Condition:
        """Return a condition variable shared between processes."""
        from .synchronize import Condition

        return Condition(lock, ctx=self.get_context())

    def Semaphore(self, value: int = 1) -> synchronize.Semaphore:
        """Return a semaphore shared between processes."""
        from .synchronize import Semaphore

        return Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value: int = 1) -> synchronize.BoundedSemaphore:
        """Return a bounded semaphore shared between processes."""
        from .synchronize import BoundedSemaphore

        return BoundedSemaphore(value, ctx=self.get_context())

    def Event(self) -> synchronize.Event:
        """Return an event shared between processes."""
        from .synchronize import Event

        return Event(ctx=self.get_context())

    def Barrier(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None
    ) -> synchronize.Barrier:
        """Return a barrier shared between processes."""
        from .synchronize import Barrier

        return Barrier(parties, action, timeout, ctx=self.get_context())

    def Queue(self, maxsize: int = 0) -> queues.Queue[Any]:
        """Return a queue shared between processes."""
        from .queues import Queue

        return Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize: int = 0) -> queues.JoinableQueue[Any]:
        """Return a queue with ``task_done()`` and ``join()``."""
        from .queues import JoinableQueue

        return JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self) -> queues.SimpleQueue[Any]:
        """Return a simple queue (no feeder thread, no size)."""
        from .queues import SimpleQueue

        return SimpleQueue(ctx=self.get_context())

    # The overloads give what typeshed gives the standard library's: a ctypes
    # type makes its own type (Synchronized[int] for c_int), a typecode Any.
    # (The overloads are for type checkers alone: typing is not imported at run
    # time, see the imports; mypy merges them with the definition after them.)
    if TYPE_CHECKING:

        @overload
        def RawValue(self, typecode_or_type: type[_CT], *args: Any) -> _CT: ...
        @overload
        def RawValue(self, typecode_or_type: str, *args: Any) -> Any: ...

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """Return a ctypes object in shared memory, without a lock."""
        from .sharedctypes import RawValue

        return RawValue(typecode_or_type, *args)

    if TYPE_CHECKING:

        @overload
        def RawArray(
            self, typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any]
        ) -> ctypes.Array[_CT]: ...
        @overload
        def RawArray(
            self, typecode_or_type: str, size_or_initializer: int | Sequence[Any]
        ) -> Any: ...

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """Return a ctypes array in shared memory, without a lock."""
        from .sharedctypes import RawArray

        return RawArray(typecode_or_type, size_or_initializer)

    if TYPE_CHECKING:

        @overload
        def Value(
            self,
            typecode_or_type: type[_SimpleCData[_T]],
            *args: Any,
            lock: Literal[True] | _LockLike = True,
        ) -> Synchronized[_T]: ...
        @overload
        def Value(self, typecode_or_type: type[_CT], *args: Any, lock: Literal[False]) -> _CT: ...
        @overload
        def Value(
            self, typecode_or_type: str, *args: Any, lock: Literal[True] | _LockLike = True
        ) -> Synchronized[Any]: ...
        @overload
        def Value(
            self, typecode_or_type: str | type[_CData], *args: Any, lock: bool | _LockLike = True
        ) -> Any: ...

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """Return a ctypes object in shared memory, synchronized by a lock."""
        from .sharedctypes import Value

        return Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    if TYPE_CHECKING:

        @overload
        def Array(
            self,
            typecode_or_type: type[c_char],
            size_or_initializer: int | Sequence[Any],
            *,
            lock: Literal[True] | _LockLike = True,
        ) -> SynchronizedString: ...
        @overload
        def Array(
            self,
            typecode_or_type: type[_SimpleCData[_T]],
            size_or_initializer: int | Sequence[Any],
            *,
            lock: Literal[True] | _LockLike = True,
        ) -> SynchronizedArray[_T]: ...
        @overload
        def Array(
            self,
            typecode_or_type: type[_CT],
            size_or_initializer: int | Sequence[Any],
            *,
            lock: Literal[False],
        ) -> ctypes.Array[_CT]: ...
        @overload
        def Array(
            self,
            typecode_or_type: str,
            size_or_initializer: int | Sequence[Any],
            *,
            lock: Literal[True] | _LockLike = True,
        ) -> SynchronizedArray[Any]: ...
        @overload
        def Array(
            self,
            typecode_or_type: str | type[_CData],
            size_or_initializer: int | Sequence[Any],
            *,
            lock: bool | _LockLike = True,
        ) -> Any: ...

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        """Return a ctypes array in shared memory, synchronized by a lock."""
        from .sharedctypes import Array

        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self.get_context())

    # -- services (layer 5) ----------------------------------------------

    def Manager(self) -> SyncManager:
        """Start and return a SyncManager serving shared objects from a new process."""
        from .managers import SyncManager

        m = SyncManager(ctx=self.get_context())
        m.start()
        return m

    def Pool(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        *,
        task_timeout: float | None = None,
        max_memory_per_child: int | str | None = None,
        memory_limit: int | str | None = None,
    ) -> Pool:
        """Return a pool of worker processes (see :class:`multiprocess.pool.Pool`)."""
        from .pool import Pool

        return Pool(
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            context=self.get_context(),
            task_timeout=task_timeout,
            max_memory_per_child=max_memory_per_child,
            memory_limit=memory_limit,
        )

    def ProcessPoolExecutor(
        self,
        max_workers: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        max_memory_per_child: int | str | None = None,
        memory_limit: int | str | None = None,
    ) -> ProcessPoolExecutor:
        """Return a ``concurrent.futures`` executor whose workers use this context.

        See :class:`multiprocess.futures.ProcessPoolExecutor`.
        """
        from .futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            max_workers,
            self.get_context(),
            initializer,
            initargs,
            max_tasks_per_child=max_tasks_per_child,
            task_timeout=task_timeout,
            max_memory_per_child=max_memory_per_child,
            memory_limit=memory_limit,
        )

    # -- configuration ---------------------------------------------------

    def freeze_support(self) -> None:
        """Support frozen executables (a no-op unless the program is frozen)."""
        if getattr(sys, "frozen", False):
            from .spawn import freeze_support

            freeze_support()

    def get_logger(self) -> logging.Logger:
        """Return the package's logger."""
        return util.get_logger()

    def log_to_stderr(self, level: int | None = None) -> logging.Logger:
        """Make the package's logger print to stderr, and return it."""
        return util.log_to_stderr(level)

    def allow_connection_pickling(self) -> None:
        """Let Connection objects be pickled (always true here; kept for the API)."""
        from . import connection  # noqa: F401  (registers the reducers)

    def set_executable(self, executable: str) -> None:
        """Set the Python interpreter used to start spawned children."""
        from .spawn import set_executable

        set_executable(executable)

    def set_forkserver_preload(self, module_names: Sequence[str]) -> None:
        """Name modules the fork server imports up front, so children start faster."""
        from .forkserver import set_forkserver_preload

        set_forkserver_preload(module_names)

    if TYPE_CHECKING:

        @overload
        def get_context(self, method: None = None) -> BaseContext: ...
        @overload
        def get_context(self, method: Literal["spawn"]) -> SpawnContext: ...
        @overload
        def get_context(self, method: Literal["fork"]) -> ForkContext: ...
        @overload
        def get_context(self, method: Literal["forkserver"]) -> ForkServerContext: ...
        @overload
        def get_context(self, method: str) -> BaseContext: ...

    def get_context(self, method: str | None = None) -> BaseContext:
        """Return the context of start method ``method`` (this one if None)."""
        if method is None:
            return self
        try:
            ctx = _concrete_contexts[method]
        except KeyError:
            raise ValueError(
                f"cannot find context for {method!r}; "
                f"available start methods: {', '.join(_concrete_contexts)}"
            ) from None
        ctx._check_available()
        return ctx

    if TYPE_CHECKING:

        @overload
        def get_start_method(self, allow_none: Literal[False] = False) -> str: ...
        @overload
        def get_start_method(self, allow_none: bool) -> str | None: ...

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """Return the start method of this context."""
        return self._name

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        raise ValueError("cannot set start method of concrete context")

    def _check_available(self) -> None:
        pass


#
# Process classes, one per start method
#


class ForkProcess(process.BaseProcess):
    """A Process started with ``os.fork()``: the child is a copy of the parent."""

    _start_method = "fork"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> Any:
        from .popen_fork import Popen

        return Popen(process_obj)


class SpawnProcess(process.BaseProcess):
    """A Process started as a fresh interpreter that receives the object by pickle."""

    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> Any:
        from .popen_spawn_posix import Popen

        return Popen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        # A spawned child starts empty: there are no inherited finalizers or
        # after-fork hooks to run.
        pass


class ForkServerProcess(process.BaseProcess):
    """A Process forked from a clean server process started on first use."""

    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> Any:
        from .popen_forkserver import Popen

        return Popen(process_obj)


class Process(process.BaseProcess):
    """A Process started with the default context's start method at ``start()``."""

    _start_method = None

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> Any:
        return _default_context.get_context().Process._Popen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        return _default_context.get_context().Process._after_fork()


_DefaultProcess = Process  # its name inside DefaultContext, whose Process it is


class ForkContext(BaseContext):
    _name = "fork"
    Process: ClassVar[type[ForkProcess]] = ForkProcess


class SpawnContext(BaseContext):
    _name = "spawn"
    Process: ClassVar[type[SpawnProcess]] = SpawnProcess


class ForkServerContext(BaseContext):
    _name = "forkserver"
    Process: ClassVar[type[ForkServerProcess]] = ForkServerProcess

    def _check_available(self) -> None:
        if not reduction.HAVE_SEND_HANDLE:
            raise ValueError("forkserver start method not available")


class DefaultContext(BaseContext):
    """The package-level context: the start method is fixed on first use."""

    Process: ClassVar[type[_DefaultProcess]] = Process

    def __init__(self, context: BaseContext) -> None:
        self._default_context = context
        self._actual_context: BaseContext | None = None

    if TYPE_CHECKING:

        @overload
        def get_context(self, method: None = None) -> BaseContext: ...
        @overload
        def get_context(self, method: Literal["spawn"]) -> SpawnContext: ...
        @overload
        def get_context(self, method: Literal["fork"]) -> ForkContext: ...
        @overload
        def get_context(self, method: Literal["forkserver"]) -> ForkServerContext: ...
        @overload
        def get_context(self, method: str) -> BaseContext: ...

    def get_context(self, method: str | None = None) -> BaseContext:
        if method is None:
            if self._actual_context is None:
                self._actual_context = self._default_context
            return self._actual_context
        return super().get_context(method)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Set the start method used by the package-level API.

        Raises RuntimeError if it was already set (or used) and ``force`` is
        false; ``set_start_method(None, force=True)`` forgets the choice.
        """
        if self._actual_context is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            self._actual_context = None
            return
        self._actual_context = self.get_context(method)

    if TYPE_CHECKING:

        @overload
        def get_start_method(self, allow_none: Literal[False] = False) -> str: ...
        @overload
        def get_start_method(self, allow_none: bool) -> str | None: ...

    def get_start_method(self, allow_none: bool = False) -> str | None:
        if self._actual_context is None:
            if allow_none:
                return None
            self._actual_context = self._default_context
        return self._actual_context._name

    def get_all_start_methods(self) -> list[str]:
        """Return the start methods available here, the default first."""
        methods = [name for name, ctx in _concrete_contexts.items() if _available(ctx)]
        default = self._default_context.get_start_method()
        methods.remove(default)
        return [default, *methods]


def _available(ctx: BaseContext) -> bool:
    try:
        ctx._check_available()
    except ValueError:
        return False
    return True


def _default_start_method_for(
    platform: str, version_info: Sequence[Any], have_send_handle: bool = True
) -> str:
    """The start method CPython ``version_info`` defaults to on ``platform``.

    Spawn on macOS (since 3.8: fork is unsafe there) and Windows; elsewhere
    forkserver from 3.14 on (fork with threads running is unsafe), when file
    descriptors can be passed over a socket; fork before 3.14.  We follow the
    running Python, so that code behaves with us as with its stdlib.
    """
    if platform == "darwin" or platform == "win32":
        return "spawn"
    if tuple(version_info[:2]) >= (3, 14):
        return "forkserver" if have_send_handle else "spawn"
    return "fork"


def _default_start_method() -> str:
    return _default_start_method_for(sys.platform, sys.version_info, reduction.HAVE_SEND_HANDLE)


_concrete_contexts: dict[str, BaseContext] = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}

_default_context = DefaultContext(_concrete_contexts[_default_start_method()])


def _force_start_method(method: str) -> None:
    """Make ``method`` the package-level start method (in a child, at bootstrap)."""
    _default_context._actual_context = _concrete_contexts[method]
