"""A dead or slow peer costs the others nothing: manager locks held by a killed
client, stalled handshakes on a Listener and on a manager server.

Every behaviour test runs under fork, spawn and forkserver (the ``ctx`` fixture).
"""

from __future__ import annotations

import signal
import threading

import _dead_peer_helpers as h
import pytest

pytestmark = pytest.mark.timeout(120)


def completes(func, *args, timeout=60.0):
    """Run ``func(*args)`` in a thread; True if it returned (a hang fails the test, not the run)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(func(*args)), daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0] is not False


# -- manager locks held by a killed client -----------------------------------------


@pytest.mark.parametrize(
    "typeid, times",
    [("Lock", 1), ("RLock", 2), ("Semaphore", 1), ("BoundedSemaphore", 1), ("Condition", 1)],
)
def test_manager_lock_held_by_a_killed_client_is_released(ctx, typeid, times):
    with ctx.Manager() as manager:
        lock = getattr(manager, typeid)()
        holding = ctx.Event()
        holder = ctx.Process(target=h.hold_and_hang, args=(lock, holding, times), daemon=True)
        holder.start()
        assert holding.wait(60)
        assert lock.acquire(False) is False  # held by the other client
        holder.kill()
        holder.join(60)
        assert holder.exitcode == -signal.SIGKILL
        assert lock.acquire(True, 60), f"{typeid} of a killed client never released"
        lock.release()
        if typeid in ("Semaphore", "BoundedSemaphore"):
            # Released once, not more: the value is back to 1.
            assert lock.acquire(False) is True
            assert lock.acquire(False) is False
            lock.release()


def test_manager_semaphore_used_as_a_signal_is_not_released_on_exit(ctx):
    # Producers release, a consumer acquires and exits: the consumer held
    # nothing, and its exit must not add to the count.
    with ctx.Manager() as manager:
        sem = manager.Semaphore(0)
        done = ctx.Queue()
        consumer = ctx.Process(target=h.acquire_times, args=(sem, 3, done))
        producer = ctx.Process(target=h.release_times, args=(sem, 3))
        consumer.start()
        producer.start()
        assert done.get(timeout=60) == 3
        for p in (producer, consumer):
            p.join(60)
            assert p.exitcode == 0
        assert sem.acquire(False) is False
        sem.release()
        assert sem.acquire(False) is True
