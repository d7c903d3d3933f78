"""multiprocess: process-based parallelism, a drop-in replacement for multiprocessing.

``import multiprocess as mp`` gives the API of the standard library's
``multiprocessing`` (same modules, names and behaviour), with serialization
built on ``dill``: lambdas, closures and functions and classes defined in
``__main__`` cross every channel under every start method.

The package-level functions below are those of the default context, whose start
method is fixed by ``set_start_method()`` or, failing that, on first use.
"""

from __future__ import annotations

from . import context as _context
from . import reduction as _reduction
from ._errors import (
    AuthenticationError,
    BufferTooShort,
    ProcessError,
    TaskTimeoutError,
    TimeoutError,
)

__version__ = "0.70.19.1.dev0"

_default = _context._default_context

Process = _context.Process
current_process = _default.current_process
parent_process = _default.parent_process
active_children = _default.active_children
cpu_count = _default.cpu_count

Pipe = _default.Pipe
Lock = _default.Lock
RLock = _default.RLock
Condition = _default.Condition
Semaphore = _default.Semaphore
BoundedSemaphore = _default.BoundedSemaphore
Event = _default.Event
Barrier = _default.Barrier
Queue = _default.Queue
JoinableQueue = _default.JoinableQueue
SimpleQueue = _default.SimpleQueue
RawValue = _default.RawValue
RawArray = _default.RawArray
Value = _default.Value
Array = _default.Array
Manager = _default.Manager
Pool = _default.Pool

freeze_support = _default.freeze_support
get_logger = _default.get_logger
log_to_stderr = _default.log_to_stderr
allow_connection_pickling = _default.allow_connection_pickling
set_executable = _default.set_executable
set_forkserver_preload = _default.set_forkserver_preload
get_context = _default.get_context
get_start_method = _default.get_start_method
set_start_method = _default.set_start_method
get_all_start_methods = _default.get_all_start_methods
get_serializer = _default.get_serializer
set_serializer = _default.set_serializer
reducer = _reduction

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "MemoryLimitError",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "TaskTimeoutError",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_serializer",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_executable",
    "set_forkserver_preload",
    "set_serializer",
    "set_start_method",
]


def __getattr__(name: str) -> object:
    # MemoryLimitError is a pool exception (layer 5): imported when first asked
    # for, so that importing the package does not import the pool.
    if name == "MemoryLimitError":
        from .pool import MemoryLimitError

        return MemoryLimitError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
