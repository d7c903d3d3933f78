"""multiprocess.dummy: the multiprocess API on threads (not built yet)."""

from .._placeholder import placeholder

__all__ = [
    "Process", "current_process", "active_children", "freeze_support", "Lock", "RLock",
    "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier", "Queue", "Manager",
    "Pipe", "Pool", "JoinableQueue",
]

_FEATURE = "multiprocess.dummy"
Process = placeholder(__name__, "Process", _FEATURE)
current_process = placeholder(__name__, "current_process", _FEATURE)
active_children = placeholder(__name__, "active_children", _FEATURE)
freeze_support = placeholder(__name__, "freeze_support", _FEATURE)
Lock = placeholder(__name__, "Lock", _FEATURE)
RLock = placeholder(__name__, "RLock", _FEATURE)
Semaphore = placeholder(__name__, "Semaphore", _FEATURE)
BoundedSemaphore = placeholder(__name__, "BoundedSemaphore", _FEATURE)
Condition = placeholder(__name__, "Condition", _FEATURE)
Event = placeholder(__name__, "Event", _FEATURE)
Barrier = placeholder(__name__, "Barrier", _FEATURE)
Queue = placeholder(__name__, "Queue", _FEATURE)
Manager = placeholder(__name__, "Manager", _FEATURE)
Pipe = placeholder(__name__, "Pipe", _FEATURE)
Pool = placeholder(__name__, "Pool", _FEATURE)
JoinableQueue = placeholder(__name__, "JoinableQueue", _FEATURE)
