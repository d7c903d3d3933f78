"""The lock that fork() waits for, and imports made under it (layer 1).

A thread that imports a module holds that module's import lock for the
duration; a child forked at that instant inherits the lock held by a thread it
does not have, and waits forever on its own first import of the module.  The
same goes for dill's pickling, which swaps ``sys.stdout`` while it
disassembles a function.  So whatever a background thread may do lazily
(import dill, cloudpickle, logging, tempfile; pickle with dill) happens while
holding :data:`FORK_LOCK`, and ``fork()`` takes that lock first
(``os.register_at_fork``): a child never starts inside such a window.
"""

from __future__ import annotations

import os
import threading

__all__ = ["FORK_LOCK"]


class _ForkLock:
    """A reentrant lock held across fork(); the child gets a fresh one."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def fork(self) -> int:
        """``os.fork()`` once no other thread is inside the lock; 0 in the child.

        Taking the lock before ``os.fork()`` rather than only in its
        ``before`` hook matters: a module imported under the lock while
        ``fork()`` waited in that hook may register fork hooks of its own
        (``logging`` does), and Python would then run its ``after_in_parent``
        hook without its ``before`` one.
        """
        self._lock.acquire()
        try:
            pid = os.fork()
        except BaseException:
            self._lock.release()
            raise
        if pid != 0:
            self._lock.release()
        return pid

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()


FORK_LOCK = _ForkLock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=FORK_LOCK._before_fork,
        after_in_parent=FORK_LOCK._after_fork_in_parent,
        after_in_child=FORK_LOCK._after_fork_in_child,
    )
