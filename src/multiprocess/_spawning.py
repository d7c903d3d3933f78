"""Which launcher is serializing a child's start-up data on this thread (layer 1).

While a spawn or forkserver launcher pickles a Process object, reducers such as
``reduction.DupFd`` and the synchronization primitives need to know that they are
being sent to a new child (and to which launcher, to pass file descriptors along).
The launcher sets itself here for the duration; everything else asks.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["assert_spawning", "get_spawning_popen", "set_spawning_popen"]

_local = threading.local()


def get_spawning_popen() -> Any | None:
    """Return the launcher currently serializing a child on this thread, or None."""
    return getattr(_local, "popen", None)


def set_spawning_popen(popen: Any | None) -> None:
    """Mark (or with None, unmark) ``popen`` as serializing a child on this thread."""
    _local.popen = popen


def assert_spawning(obj: Any) -> None:
    """Raise RuntimeError unless a child's start-up data is being serialized.

    Objects that can only be inherited (locks, queues, authkeys) call this from
    their ``__reduce__`` / ``__getstate__``.
    """
    if get_spawning_popen() is None:
        raise RuntimeError(
            f"{type(obj).__name__} objects should only be shared between processes "
            "through inheritance"
        )
