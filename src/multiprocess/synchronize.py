"""Locks, semaphores, conditions, events and barriers shared between processes (layer 4).

Every primitive is built on ``_multiprocessing.SemLock``, the interpreter's
wrapper of a POSIX named semaphore::

    Lock, RLock, Semaphore, BoundedSemaphore   one SemLock each
    Condition   a lock + two counting semaphores (woken, wait) + a registry
                of its sleepers (pids) in a small block of shared memory
    Event       a Condition + a semaphore used as a 0/1 flag
    Barrier     threading.Barrier's algorithm on a Condition, its two
                counters in a small block of shared memory

How a primitive reaches a child depends on the start method of the context it
was made with:

- fork: the child inherits it.  The semaphore's name is unlinked at once, so
  nothing can leak; the object cannot be sent to a spawned child (RuntimeError,
  as in the standard library).
- spawn, forkserver: the object is pickled with the child's start-up data and
  the child reopens the semaphore by name.  The name is registered with the
  resource tracker and unlinked when the creating object is collected or its
  process exits.

Outside a child's start-up, pickling any of them raises RuntimeError: they are
shared by inheritance only.  (A Manager serves proxies for the other cases.)
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import threading
import time
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from . import process, reduction, resource_tracker, util
from ._posix import pid_alive
from ._spawning import assert_spawning

try:
    import _multiprocessing
    from _multiprocessing import sem_unlink
except ImportError:  # pragma: no cover - platforms without sem_open
    raise ImportError(
        "This platform lacks a functioning sem_open implementation, therefore "
        "the synchronization primitives needed by multiprocess will not work "
        "(see CPython issue 3770)."
    ) from None

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "RLock", "Semaphore"]

#
# Constants
#

RECURSIVE_MUTEX = 0
SEMAPHORE = 1
SEM_VALUE_MAX: int = _multiprocessing.SemLock.SEM_VALUE_MAX

_FORK_CONTEXT_ERROR = (
    "A SemLock created in a fork context is being shared with a process in a "
    "spawn context. This is not supported. Please use the same context to create "
    "multiprocessing objects and Process."
)


class SemaphoreValueError(OSError, ValueError):
    """A semaphore's initial value is out of range (negative, or above ``SEM_VALUE_MAX``).

    The standard library lets ``sem_open()`` refuse it, with ``OSError``
    (``EINVAL``); ``threading.Semaphore`` raises ``ValueError``.  This is both
    (as ``io.UnsupportedOperation`` is), with ``errno`` ``EINVAL``, so that
    ``except`` clauses written for either catch it.  Not in ``__all__``: the
    standard library has no such name.
    """

    def __init__(self, *args: Any) -> None:
        # SemaphoreValueError(message); (errno, message) when unpickled.
        super().__init__(*((errno.EINVAL, *args) if len(args) == 1 else args))


def _resolve_context(ctx: Any) -> Any:
    """The concrete context of ``ctx``; None means the package's default one."""
    if ctx is None:
        from .context import _default_context

        ctx = _default_context
    return ctx.get_context()


def _owner_name() -> str:
    """'ProcessName' or 'ProcessName|ThreadName' (as in the locks' repr)."""
    name = process.current_process().name
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        name += "|" + thread.name
    return name


#
# Base class: one named POSIX semaphore
#


class SemLock:
    """A semaphore or mutex shared between processes (base of the lock classes).

    Args:
        kind: ``SEMAPHORE`` or ``RECURSIVE_MUTEX``.
        value: the initial value.
        maxvalue: the largest value (1 for locks).
        ctx: the context whose start method decides how children get it.

    ``acquire(block=True, timeout=None)`` and ``release()`` are those of the
    C object: a negative timeout counts as zero, and a timeout that is not a
    number raises TypeError.
    """

    _semlock: Any

    def __init__(self, kind: int, value: int, maxvalue: int, *, ctx: Any) -> None:
        ctx = _resolve_context(ctx)
        if value < 0:
            raise SemaphoreValueError(f"semaphore initial value must be >= 0, not {value!r}")
        if value > SEM_VALUE_MAX:
            raise SemaphoreValueError(
                f"semaphore initial value must be <= SEM_VALUE_MAX ({SEM_VALUE_MAX}), not {value!r}"
            )
        self._is_fork_ctx = ctx.get_start_method() == "fork"
        # Under fork the children inherit the semaphore itself: its name is not
        # needed, and unlinking it now means that it can never leak.
        unlink_now = self._is_fork_ctx
        for _attempt in range(100):
            try:
                self._semlock = _multiprocessing.SemLock(
                    kind, value, maxvalue, _new_semaphore_name(), unlink_now
                )
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError("cannot find a free name for a semaphore")
        util.debug("created semlock with handle %s", self._semlock.handle)
        self._make_methods()
        util.register_after_fork(self, _reset_semlock_after_fork)

        name = self._semlock.name
        if name is not None:
            # Spawned children reopen the semaphore by name: keep the name until
            # this object goes away, and let the resource tracker unlink it if
            # this process dies first.
            resource_tracker.register(name, "semaphore")
            util.Finalize(self, _unlink_semaphore, (name,), exitpriority=0)

    def _make_methods(self) -> None:
        self.acquire = self._semlock.acquire
        self.release = self._semlock.release

    def __enter__(self) -> bool:
        return self._semlock.__enter__()

    def __exit__(self, *args: object) -> None:
        return self._semlock.__exit__(*args)

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        if self._is_fork_ctx:
            raise RuntimeError(_FORK_CONTEXT_ERROR)
        sl = self._semlock
        return (sl.handle, sl.kind, sl.maxvalue, sl.name)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._semlock = _multiprocessing.SemLock._rebuild(*state)
        util.debug("recreated semlock with handle %r", state[0])
        self._make_methods()
        # A rebuilt semaphore is named: it may be passed on to another child.
        self._is_fork_ctx = False
        util.register_after_fork(self, _reset_semlock_after_fork)


def _new_semaphore_name() -> str:
    # macOS allows at most 31 characters; random, so that forked processes
    # (which share the parent's random state) never pick the same name.
    prefix = process.current_process()._config.get("semprefix", "/mp")
    return f"{prefix}-{secrets.token_hex(4)}"


def _reset_semlock_after_fork(obj: SemLock) -> None:
    # The child's threads own nothing: forget the parent's recursion count.
    obj._semlock._after_fork()


def _unlink_semaphore(name: str) -> None:
    try:
        sem_unlink(name)
    except FileNotFoundError:
        pass
    resource_tracker.unregister(name, "semaphore")


#
# Semaphores and locks
#


class Semaphore(SemLock):
    """A counting semaphore shared between processes (``threading.Semaphore``'s API)."""

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        SemLock.__init__(self, SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx)

    def get_value(self) -> int:
        """The current value (NotImplementedError on macOS, which cannot read it)."""
        return self._semlock._get_value()

    def __repr__(self) -> str:
        try:
            value = self._semlock._get_value()
        except Exception:  # noqa: BLE001 - a repr must not fail
            value = "unknown"
        return f"<{type(self).__name__}(value={value})>"


class BoundedSemaphore(Semaphore):
    """A semaphore whose value may not exceed its initial value.

    Releasing it once too often raises ValueError.
    """

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx)

    def __repr__(self) -> str:
        try:
            value = self._semlock._get_value()
        except Exception:  # noqa: BLE001 - a repr must not fail
            value = "unknown"
        return f"<{type(self).__name__}(value={value}, maxvalue={self._semlock.maxvalue})>"


class Lock(SemLock):
    """A non-recursive lock shared between processes.

    Any process or thread may release it; releasing it while it is not held
    raises ValueError.
    """

    def __init__(self, *, ctx: Any = None) -> None:
        SemLock.__init__(self, SEMAPHORE, 1, 1, ctx=ctx)

    def __repr__(self) -> str:
        try:
            sl = self._semlock
            if sl._is_mine():
                owner = _owner_name()
            elif sl._get_value() == 1:
                owner = "None"
            elif sl._count() > 0:
                owner = "SomeOtherThread"
            else:
                owner = "SomeOtherProcess"
        except Exception:  # noqa: BLE001 - a repr must not fail
            owner = "unknown"
        return f"<{type(self).__name__}(owner={owner})>"


class RLock(SemLock):
    """A recursive lock shared between processes.

    Only its owner may release it; anyone else gets AssertionError (raised by
    ``_multiprocessing``, as in the standard library).
    """

    def __init__(self, *, ctx: Any = None) -> None:
        SemLock.__init__(self, RECURSIVE_MUTEX, 1, 1, ctx=ctx)

    def __repr__(self) -> str:
        try:
            sl = self._semlock
            if sl._is_mine():
                owner, count = _owner_name(), sl._count()
            elif sl._get_value() == 1:
                owner, count = "None", 0
            elif sl._count() > 0:
                owner, count = "SomeOtherThread", "nonzero"
            else:
                owner, count = "SomeOtherProcess", "nonzero"
        except Exception:  # noqa: BLE001 - a repr must not fail
            owner, count = "unknown", "unknown"
        return f"<{type(self).__name__}({owner}, {count})>"


#
# Condition variable
#


class Condition:
    """A condition variable shared between processes (``threading.Condition``'s API).

    Built from the lock, two semaphores and a registry of sleepers in shared
    memory (a :class:`_SharedBlock`):

    - the registry: one slot per sleeper, ``(pid, state)``, where state is
      sleeping, woken (it took a wake-up) or left (it timed out).  A sleeper
      takes its slot under the lock and frees it once it holds the lock again;
    - ``_wait_semaphore``: what the sleepers sleep on; ``notify`` releases it
      once per sleeper it wakes;
    - ``_stopped_signal``: released by each sleeper once it has recorded why it
      stopped sleeping, so that a notifier waiting for its sleepers wakes up.

    ``_sleeping_count`` and ``_woken_count`` are compatibility hooks for
    CPython's test suite, which reads their ``get_value()`` (sleepers are the
    difference): read-only counts of the registry's slots, taken and stopped.

    ``notify(n)`` frees the slots of sleepers whose process is gone (a killed
    sleeper never took a wake-up: none is on offer between two notifies),
    offers ``min(n, sleepers)`` wake-ups, and waits, holding the lock,
    until that many of those sleepers are woken or none of them sleeps any
    more; a sleeper cannot be counted twice, and one that arrives later cannot
    take a wake-up meant for an earlier one.  It re-checks every
    ``_DEAD_SLEEPER_POLL`` seconds that the sleepers it waits for are alive
    (zombies count as dead, on Linux): a process killed while it waits never
    holds the others up for longer than that, once.  Waiting and
    notifying need the lock (RuntimeError otherwise, as ``threading.Condition``).

    Limits: a process killed while it *holds* the lock leaves it held (as the
    standard library's Lock).  If a sleeper dies in the instant between taking
    a wake-up and recording it, ``notify`` offers a replacement, which, should a
    live sleeper have been slow to record its own, can wake one sleeper more
    than ``n`` (a spurious wake-up; ``wait_for`` and a loop around ``wait``
    absorb it).  At most ``_MAX_SLEEPERS`` processes and threads may wait at
    once.
    """

    def __init__(self, lock: Any = None, *, ctx: Any = None) -> None:
        ctx = _resolve_context(ctx)
        self._lock = lock if lock is not None else ctx.RLock()
        self._stopped_signal = ctx.Semaphore(0)
        self._wait_semaphore = ctx.Semaphore(0)
        # Under fork, no descriptor: a Condition made in a fork context cannot
        # go to a spawned child anyway (its semaphores refuse).
        fork_only = ctx.get_start_method() == "fork"
        self._registry = _SharedBlock(_REGISTRY_BYTES, fork_only=fork_only)
        self._make_methods()

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (self._lock, self._stopped_signal, self._wait_semaphore, self._registry)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self._lock, self._stopped_signal, self._wait_semaphore, self._registry) = state
        self._make_methods()

    def _make_methods(self) -> None:
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        # [0]: slots in use (the highest used + 1); slot i: pid at 2 + 2i, state at 3 + 2i.
        self._slots = memoryview(self._registry.buf).cast("i")
        self._sleeping_count = _SlotCount(self._slots, (_SLEEPING, _WOKEN, _LEFT))
        self._woken_count = _SlotCount(self._slots, (_WOKEN, _LEFT))

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        waiters: int | str
        try:
            waiters = self._sleepers()
        except Exception:  # noqa: BLE001 - a repr must not fail
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"

    def _sleepers(self) -> int:
        """How many registered waiters have not stopped sleeping (dead ones included)."""
        slots = self._slots
        return sum(1 for i in range(slots[0]) if slots[3 + 2 * i] == _SLEEPING)

    # -- the registry of sleepers (changed under the lock, except a sleeper's
    #    own state once it stops sleeping) --------------------------------------

    def _take_slot(self) -> int:
        slots = self._slots
        used = slots[0]
        for i in range(used):
            if slots[3 + 2 * i] == _FREE:
                break
        else:
            i = used
            if i >= _MAX_SLEEPERS:
                i = self._reclaim_a_dead_slot()
            else:
                slots[0] = used + 1
        slots[2 + 2 * i] = os.getpid()
        slots[3 + 2 * i] = _SLEEPING
        return i

    def _reclaim_a_dead_slot(self) -> int:
        slots = self._slots
        for i in range(slots[0]):
            if not pid_alive(slots[2 + 2 * i]):
                return i
        raise RuntimeError(
            f"more than {_MAX_SLEEPERS} processes and threads wait on this Condition at once; "
            "use several conditions, or fewer waiters"
        )

    def _free_slot(self, i: int) -> None:
        slots = self._slots
        slots[3 + 2 * i] = _FREE
        slots[2 + 2 * i] = 0
        used = slots[0]
        while used and slots[3 + 2 * (used - 1)] == _FREE:
            used -= 1
        slots[0] = used

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified or until ``timeout``, re-acquire.

        Returns False if the timeout expired, True otherwise.
        """
        semlock = self._lock._semlock
        if not semlock._is_mine():
            raise RuntimeError("cannot wait on un-acquired lock")
        slot = self._take_slot()
        # An RLock may be held several times: release it fully, restore after.
        depth = semlock._count()
        for _ in range(depth):
            self._lock.release()
        woken = False
        try:
            woken = self._wait_semaphore.acquire(True, timeout)
            return woken
        finally:
            # Record why we stopped sleeping, and tell a notifier that may be
            # waiting for it (holding the lock) before re-acquiring the lock.
            self._slots[3 + 2 * slot] = _WOKEN if woken else _LEFT
            try:
                self._stopped_signal.release()
            except (OSError, ValueError):
                pass  # the count is at its maximum: the signal is there already
            for _ in range(depth):
                self._lock.acquire()
            self._free_slot(slot)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true, or ``timeout`` seconds have passed.

        Returns the last value of ``predicate()``.
        """
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = None
        while not result:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up at most ``n`` processes or threads waiting on this condition.

        Sleepers whose process has died are skipped: ``notify`` never waits
        for them.
        """
        if not self._lock._semlock._is_mine():
            raise RuntimeError("cannot notify on un-acquired lock")
        slots = self._slots
        # Signals left by sleepers that stopped since the last notify.
        while self._stopped_signal.acquire(False):
            pass
        sleepers = []
        for i in range(slots[0]):
            state = slots[3 + 2 * i]
            if state == _FREE:
                continue
            if not pid_alive(slots[2 + 2 * i], zombie_is_dead=False):
                # Died before this notify, while no wake-up was on offer.  (A
                # zombie, not yet reaped, is found below, should it matter.)
                self._free_slot(i)
            elif state == _SLEEPING:
                sleepers.append(i)
        target = min(n, len(sleepers))
        if target <= 0:
            return
        for _ in range(target):
            self._wait_semaphore.release()
        died = replaced = 0
        while True:
            woken = sum(1 for i in sleepers if slots[3 + 2 * i] == _WOKEN)
            asleep = [i for i in sleepers if slots[3 + 2 * i] == _SLEEPING]
            if woken >= target or not asleep:
                break
            if self._stopped_signal.acquire(True, _DEAD_SLEEPER_POLL):
                continue
            # Quiet for a while: is anyone we wait for dead?
            for i in asleep:
                if not pid_alive(slots[2 + 2 * i]):
                    self._free_slot(i)
                    sleepers.remove(i)
                    died += 1
            asleep = [i for i in sleepers if slots[3 + 2 * i] == _SLEEPING]
            if died > replaced and asleep and not self._wait_semaphore_has_value():
                # Every wake-up on offer is gone, yet no live sleeper recorded
                # one: a sleeper died just after taking it.  Offer another.
                self._wait_semaphore.release()
                replaced += 1
        # Wake-ups left by sleepers that timed out or died instead of taking
        # them: take them back, or they would wake a future sleeper early.
        while self._wait_semaphore.acquire(False):
            pass

    def _wait_semaphore_has_value(self) -> bool:
        if self._wait_semaphore.acquire(False):
            self._wait_semaphore.release()
            return True
        return False

    def notify_all(self) -> None:
        """Wake up every process or thread waiting on this condition."""
        self.notify(n=SEM_VALUE_MAX)

    notifyAll = notify_all


class _SlotCount:
    """How many slots of a Condition's registry are in one of ``states`` (read-only)."""

    def __init__(self, slots: memoryview, states: tuple[int, ...]) -> None:
        self._slots = slots
        self._states = states

    def get_value(self) -> int:
        slots, states = self._slots, self._states
        return sum(1 for i in range(slots[0]) if slots[3 + 2 * i] in states)


# Slot states in a Condition's registry of sleepers.
_FREE, _SLEEPING, _WOKEN, _LEFT = 0, 1, 2, 3
_MAX_SLEEPERS = 4095
_REGISTRY_BYTES = 8 * (1 + _MAX_SLEEPERS)  # memory pages are only used once touched
# How often a notifier that waits for its sleepers checks that they are alive.
_DEAD_SLEEPER_POLL = 0.05


#
# Event
#


class Event:
    """An event flag shared between processes (``threading.Event``'s API).

    The flag is a semaphore of value 0 or 1, changed under a Condition whose
    waiters ``set()`` wakes.  A process killed while it waits does not hold up
    ``set()`` or ``clear()`` (see :class:`Condition`).
    """

    def __init__(self, *, ctx: Any = None) -> None:
        ctx = _resolve_context(ctx)
        self._cond = ctx.Condition(ctx.Lock())
        self._flag = ctx.Semaphore(0)

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (self._cond, self._flag)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._cond, self._flag = state

    def _peek(self) -> bool:
        # Called with the condition held: read the flag without changing it.
        if self._flag.acquire(False):
            self._flag.release()
            return True
        return False

    def is_set(self) -> bool:
        """True when the flag is set."""
        with self._cond:
            return self._peek()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._cond:
            self._flag.acquire(False)
            self._flag.release()
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` expires; return the flag."""
        with self._cond:
            if self._peek():
                return True
            self._cond.wait(timeout)
            return self._peek()

    def __repr__(self) -> str:
        status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {status}>"


#
# Shared memory for small shared state
#


class _SharedBlock:
    """A few bytes of memory shared by the processes of a tree (internal).

    The memory is an anonymous file (``memfd_create`` on Linux; elsewhere a
    POSIX shared memory object unlinked as soon as it is opened), mapped with
    ``mmap``.  It has no name, so nothing can leak: it lives while some process
    holds its descriptor or a mapping of it.  Forked children inherit the
    mapping; spawned and forkserver children receive the descriptor with their
    start-up data (the launcher passes it), and pickling it at any other time
    raises RuntimeError.

    ``fork_only=True`` maps anonymous shared memory instead, with no
    descriptor: forked children inherit it, and pickling it raises
    RuntimeError (for objects of a fork context, which go nowhere else).

    ``buf`` is the mapping (zero-filled at creation).  Used for the counters of
    :class:`Barrier`, the registry of a :class:`Condition`'s sleepers and the
    lock owners of ``queues.Queue``; the package's
    shared heap (``heap.BufferWrapper``), once built, can take this over.
    """

    def __init__(self, size: int, *, fork_only: bool = False) -> None:
        if fork_only:
            # Only forked children will see it: a mapping without a descriptor
            # (no file descriptor held per block).
            self._fd = -1
            self._size = size
            self.buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        else:
            self._setup(_anonymous_memory_fd(size), size)

    def _setup(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self.buf = mmap.mmap(fd, size)
        weakref.finalize(self, os.close, fd)

    def __reduce__(self) -> Any:
        assert_spawning(self)
        if self._fd < 0:
            raise RuntimeError(_FORK_CONTEXT_ERROR)
        return _rebuild_shared_block, (reduction.DupFd(self._fd), self._size)


def _rebuild_shared_block(dupfd: Any, size: int) -> _SharedBlock:
    block = _SharedBlock.__new__(_SharedBlock)
    block._setup(dupfd.detach(), size)
    return block


def _anonymous_memory_fd(size: int) -> int:
    """A descriptor of ``size`` bytes of zeroed memory that no name refers to."""
    fd = -1
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create("multiprocess", os.MFD_CLOEXEC)
        except OSError:  # e.g. ENOSYS under an old kernel or a sandbox
            fd = -1
    if fd < 0:
        import _posixshmem

        for _attempt in range(100):
            name = f"/mp-blk-{secrets.token_hex(6)}"
            try:
                fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
            except FileExistsError:
                continue
            _posixshmem.shm_unlink(name)
            break
        else:
            raise FileExistsError("cannot find a free name for shared memory")
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


#
# Barrier
#


class Barrier(threading.Barrier):
    """A barrier for ``parties`` processes (``threading.Barrier``'s API).

    The algorithm is ``threading.Barrier``'s, run on a shared Condition; its two
    counters (state and number of waiters) live in a :class:`_SharedBlock`
    instead of instance attributes.  ``action``, if given, must be picklable
    for spawn and forkserver children; it runs in the last process to arrive.
    A broken, aborted or timed-out barrier raises ``threading.BrokenBarrierError``.
    """

    def __init__(
        self,
        parties: int,
        action: Callable[[], Any] | None = None,
        timeout: float | None = None,
        *,
        ctx: Any = None,
    ) -> None:
        if parties < 1:
            raise ValueError("parties must be > 0")
        ctx = _resolve_context(ctx)
        self.__setstate__((parties, action, timeout, ctx.Condition(), _SharedBlock(8)))
        self._state = 0
        self._count = 0

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (self._parties, self._action, self._timeout, self._cond, self._block)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self._parties, self._action, self._timeout, self._cond, self._block) = state
        self._counters = memoryview(self._block.buf).cast("i")

    # 0 filling, 1 draining, -1 resetting, -2 broken (threading.Barrier's codes)
    @property  # type: ignore[override]
    def _state(self) -> int:
        return self._counters[0]

    @_state.setter
    def _state(self, value: int) -> None:
        self._counters[0] = value

    @property  # type: ignore[override]
    def _count(self) -> int:
        return self._counters[1]

    @_count.setter
    def _count(self, value: int) -> None:
        self._counters[1] = value
