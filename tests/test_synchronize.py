"""Locks, semaphores, conditions, events and barriers across processes, every start method."""

from __future__ import annotations

import errno
import functools
import os
import pickle
import random
import signal
import sys
import threading
import time

import _sync_helpers as h
import pytest
from _fd_helpers import fd_count

import multiprocess as mp
from multiprocess import synchronize
from multiprocess.synchronize import SEM_VALUE_MAX

HAVE_GETVALUE = sys.platform != "darwin"  # sem_getvalue() is broken on macOS
needs_getvalue = pytest.mark.skipif(not HAVE_GETVALUE, reason="sem_getvalue() unavailable")


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join_all(procs, expect=0):
    for p in procs:
        p.join(60)
        assert p.exitcode == expect


def test_public_names():
    assert set(synchronize.__all__) == {
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Event",
        "Barrier",
    }
    for name in synchronize.__all__ + ["SemLock", "SEM_VALUE_MAX", "sem_unlink"]:
        assert hasattr(synchronize, name)
    assert issubclass(synchronize.Barrier, threading.Barrier)


# -- locks ---------------------------------------------------------------------


def test_lock_mutual_exclusion(ctx, tmp_path):
    lock = ctx.Lock()
    path = tmp_path / "counter"
    path.write_text("0")
    procs = [start(ctx, h.increment_file, lock, str(path), 50) for _ in range(4)]
    join_all(procs)
    assert int(path.read_text()) == 200


def test_rlock_mutual_exclusion(ctx):
    lock = ctx.RLock()
    inside = ctx.Semaphore(1)
    violations = ctx.Semaphore(0)
    procs = [start(ctx, h.exclusive_section, lock, inside, violations, 200) for _ in range(3)]
    join_all(procs)
    assert not violations.acquire(False)


def test_lock_basics(ctx):
    lock = ctx.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0.05) is False
    assert lock.acquire(timeout=-1) is False  # a negative timeout counts as zero
    assert lock.release() is None
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    with lock:
        assert lock.acquire(False) is False
    assert lock.acquire(False) is True
    lock.release()


def test_lock_bad_timeout(ctx):
    lock = ctx.Lock()
    lock.acquire()
    with pytest.raises(TypeError):
        lock.acquire(True, "soon")
    lock.release()


def test_lock_seen_held_from_child(ctx):
    lock = ctx.Lock()
    results = ctx.Queue()
    holding, done = ctx.Event(), ctx.Event()
    holder = start(ctx, h.hold_until, lock, holding, done)
    assert holding.wait(60)
    assert lock.acquire(False) is False
    assert repr(lock) == "<Lock(owner=SomeOtherProcess)>"
    checker = start(ctx, h.try_acquire, lock, results)
    assert results.get(timeout=60) is False
    done.set()
    join_all([holder, checker])
    assert lock.acquire(timeout=10)
    lock.release()


def test_lock_released_by_another_process(ctx):
    # A Lock is a binary semaphore: anybody may release it.
    lock = ctx.Lock()
    lock.acquire()
    join_all([start(ctx, h.release, lock)])
    assert lock.acquire(False) is True
    lock.release()


def test_rlock_basics(ctx):
    lock = ctx.RLock()
    assert lock.acquire() and lock.acquire() and lock.acquire()
    assert repr(lock) == "<RLock(MainProcess, 3)>"
    for _ in range(3):
        assert lock.release() is None
    with pytest.raises(AssertionError):
        lock.release()
    assert repr(lock) == "<RLock(None, 0)>"


def test_rlock_release_from_other_thread(ctx):
    lock = ctx.RLock()
    lock.acquire()
    errors = []

    def release():
        try:
            lock.release()
        except AssertionError as e:
            errors.append(e)

    t = threading.Thread(target=release)
    t.start()
    t.join()
    assert len(errors) == 1
    lock.release()


def test_rlock_held_by_parent_is_not_the_childs(ctx):
    lock = ctx.RLock()
    results = ctx.Queue()
    lock.acquire()
    join_all([start(ctx, h.try_acquire, lock, results)])
    assert results.get(timeout=60) is False
    lock.release()


def test_reprs(ctx):
    lock, rlock = ctx.Lock(), ctx.RLock()
    assert repr(lock) == "<Lock(owner=None)>"
    assert repr(rlock) == "<RLock(None, 0)>"
    with lock:
        assert repr(lock) == "<Lock(owner=MainProcess)>"
    box = []
    with lock:
        t = threading.Thread(target=lambda: box.append(repr(lock)), name="T1")
        t.start()
        t.join()
    assert box == ["<Lock(owner=SomeOtherThread)>"]
    with rlock:
        t = threading.Thread(target=lambda: box.append(repr(rlock)))
        t.start()
        t.join()
    assert box[-1] == "<RLock(SomeOtherThread, nonzero)>"

    def in_thread():
        with lock:
            box.append(repr(lock))

    t = threading.Thread(target=in_thread, name="Worker")
    t.start()
    t.join()
    assert box[-1] == "<Lock(owner=MainProcess|Worker)>"
    if HAVE_GETVALUE:
        assert repr(ctx.Semaphore(3)) == "<Semaphore(value=3)>"
        assert repr(ctx.BoundedSemaphore(2)) == "<BoundedSemaphore(value=2, maxvalue=2)>"
        assert repr(ctx.Condition()) == "<Condition(<RLock(None, 0)>, 0)>"
        assert repr(ctx.Condition(ctx.Lock())) == "<Condition(<Lock(owner=None)>, 0)>"


# -- semaphores ----------------------------------------------------------------


def test_semaphore_counts_across_processes(ctx):
    sem = ctx.Semaphore(0)
    procs = [start(ctx, h.release, sem, 3) for _ in range(4)]
    for _ in range(12):
        assert sem.acquire(timeout=60)
    join_all(procs)
    assert sem.acquire(False) is False
    if HAVE_GETVALUE:
        assert sem.get_value() == 0


@needs_getvalue
def test_semaphore_values(ctx):
    sem = ctx.Semaphore(2)
    assert sem.get_value() == 2
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(False) is False
    assert sem.get_value() == 0
    sem.release()
    sem.release()
    sem.release()  # unbounded
    assert sem.get_value() == 3


def test_semaphore_timeouts(ctx):
    sem = ctx.Semaphore(0)
    assert sem.acquire(False) is False
    assert sem.acquire(False, 10) is False  # non-blocking ignores the timeout
    t0 = time.monotonic()
    assert sem.acquire(True, 0.1) is False
    assert time.monotonic() - t0 >= 0.09
    assert sem.acquire(timeout=-5) is False
    with pytest.raises(TypeError):
        sem.acquire(True, "x")


def test_bounded_semaphore_over_release(ctx):
    sem = ctx.BoundedSemaphore(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    sem.acquire()
    join_all([start(ctx, h.release, sem)])
    with pytest.raises(ValueError):
        sem.release()


@pytest.mark.parametrize("factory", ["Semaphore", "BoundedSemaphore"])
def test_semaphore_bad_values(ctx, factory):
    for bad, match in ((-1, "must be >= 0, not -1"), (synchronize.SEM_VALUE_MAX + 1, "<= SEM_")):
        # The stdlib raises OSError (EINVAL) and threading ValueError: both catch it.
        with pytest.raises(OSError, match=match) as info:
            getattr(ctx, factory)(bad)
        assert isinstance(info.value, ValueError)
        assert info.value.errno == errno.EINVAL
        assert type(pickle.loads(pickle.dumps(info.value))) is type(info.value)
    with pytest.raises(TypeError):
        getattr(ctx, factory)("3")
    sem = getattr(ctx, factory)(0)  # nothing broke
    assert not sem.acquire(timeout=0)


# -- conditions ----------------------------------------------------------------


def test_condition_notify_and_notify_all(ctx):
    cond = ctx.Condition()
    sleeping, woken = ctx.Semaphore(0), ctx.Semaphore(0)
    procs = [start(ctx, h.cond_sleeper, cond, sleeping, woken) for _ in range(4)]
    for _ in procs:
        assert sleeping.acquire(timeout=60)
    # Each child released `sleeping` holding the lock, and wait() releases it
    # only after counting itself as a sleeper: once we hold it, all 4 sleep.
    with cond:
        assert repr(cond).endswith(", 4)>") or not HAVE_GETVALUE
        cond.notify()
    assert woken.acquire(timeout=60)
    assert not woken.acquire(timeout=0.2)
    with cond:
        cond.notify(2)
    assert woken.acquire(timeout=60) and woken.acquire(timeout=60)
    assert not woken.acquire(timeout=0.2)
    with cond:
        cond.notify_all()
    assert woken.acquire(timeout=60)
    join_all(procs)
    with cond:
        cond.notify_all()  # nobody left: returns at once
    assert repr(cond).endswith(", 0)>")
    if HAVE_GETVALUE:
        assert cond._wait_semaphore.get_value() == 0


def test_condition_notify_wakes_threads_and_processes(ctx):
    cond = ctx.Condition(ctx.Lock())
    sleeping, woken = ctx.Semaphore(0), ctx.Semaphore(0)
    p = start(ctx, h.cond_sleeper, cond, sleeping, woken)
    t = threading.Thread(target=h.cond_sleeper, args=(cond, sleeping, woken))
    t.start()
    sleeping.acquire(timeout=60)
    sleeping.acquire(timeout=60)
    with cond:
        cond.notify_all()
    assert woken.acquire(timeout=60) and woken.acquire(timeout=60)
    t.join()
    join_all([p])


def test_condition_wait_for_across_processes(ctx):
    cond = ctx.Condition()
    counter, ready = ctx.Semaphore(0), ctx.Event()
    p = start(ctx, h.cond_count_up, cond, counter, 3, ready)
    seen = []

    def reached_three():
        # Count the semaphore without sem_getvalue (macOS): drain and refill.
        n = 0
        while counter.acquire(False):
            n += 1
        for _ in range(n):
            counter.release()
        seen.append(n)
        return n == 3

    with cond:
        ready.set()
        assert cond.wait_for(reached_three, timeout=60) is True
    join_all([p])
    assert seen[-1] == 3


def test_condition_timeouts(ctx):
    cond = ctx.Condition()
    with cond:
        assert cond.wait(0) is False
        t0 = time.monotonic()
        assert cond.wait(0.1) is False
        assert time.monotonic() - t0 >= 0.09
        assert cond.wait(-1) is False
        assert cond.wait_for(lambda: 0, timeout=0.05) == 0
        assert cond.wait_for(lambda: "yes", timeout=0) == "yes"
        with pytest.raises(TypeError):
            cond.wait("x")
        # The failed wait left the condition usable.
        cond.notify()
    if HAVE_GETVALUE:
        assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"


def test_condition_with_recursive_lock_held_twice(ctx):
    cond = ctx.Condition()
    counter, ready = ctx.Semaphore(0), ctx.Event()
    ready.set()
    with cond, cond:
        p = start(ctx, h.cond_count_up, cond, counter, 1, ready)
        # wait() releases the RLock fully, so the child can take it and notify.
        assert cond.wait_for(lambda: counter.acquire(False), timeout=60)
        assert cond._lock._semlock._count() == 2
    join_all([p])


def test_condition_needs_the_lock(ctx):
    cond = ctx.Condition()
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.notify_all()


# -- events --------------------------------------------------------------------


def test_event_set_in_child_seen_by_parent(ctx):
    event = ctx.Event()
    assert event.is_set() is False
    assert event.wait(0) is False
    p = start(ctx, h.set_event, event)
    assert event.wait(60) is True
    assert event.is_set() is True
    join_all([p])


def test_event_set_in_parent_seen_by_child(ctx):
    event, answer = ctx.Event(), ctx.Event()
    results = ctx.Queue()
    procs = [start(ctx, h.wait_event_and_answer, event, answer, results) for _ in range(3)]
    event.set()
    assert [results.get(timeout=60) for _ in procs] == [True] * 3
    assert answer.wait(60)
    join_all(procs)


def test_event_wait_timeout_in_child(ctx):
    event = ctx.Event()
    results = ctx.Queue()
    join_all([start(ctx, h.wait_event_with_timeout, event, 0.05, results)])
    assert results.get(timeout=60) is False


def test_event_api(ctx):
    event = ctx.Event()
    assert repr(event).endswith(" unset>") and repr(event).startswith("<Event at 0x")
    t0 = time.monotonic()
    assert event.wait(0.1) is False
    assert time.monotonic() - t0 >= 0.09
    assert event.wait(-1) is False
    event.set()
    event.set()
    assert event.is_set() and event.wait() is True and event.wait(0) is True
    assert repr(event).endswith(" set>")
    event.clear()
    event.clear()
    assert not event.is_set()
    with pytest.raises(TypeError):
        event.wait("x")


# -- a process killed while it waits costs the others nothing ------------------


def wait_until(predicate, what, timeout=60.0):
    """Poll ``predicate`` (an observable state, not a delay) until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for {what}")
        time.sleep(0.005)


def sleepers(cond):
    """The number of processes and threads sleeping in ``cond.wait()`` (from its repr)."""
    return int(repr(cond).rsplit(", ", 1)[1].rstrip(")>"))


def completes(func, *args, timeout=60.0):
    """Run ``func(*args)`` in a thread; True if it returned (a hang fails the test, not the run)."""
    thread = threading.Thread(target=func, args=args, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_event_set_and_clear_after_a_waiter_is_killed(ctx):
    event = ctx.Event()
    results = ctx.Queue()
    victim = start(ctx, h.wait_event_with_timeout, event, None, results)
    wait_until(lambda: sleepers(event._cond) == 1, "the victim to wait")
    live = start(ctx, h.wait_event_with_timeout, event, 60, results)
    wait_until(lambda: sleepers(event._cond) == 2, "both waiters to wait")
    victim.kill()  # not reaped yet: a zombie must count as gone too
    assert completes(event.set), "Event.set() hangs on a killed waiter"
    assert results.get(timeout=60) is True
    join_all([live])
    assert completes(event.clear), "Event.clear() hangs on a killed waiter"
    victim.join(60)
    assert victim.exitcode == -signal.SIGKILL
    # The event still works for the living.
    again = start(ctx, h.wait_event_with_timeout, event, 60, results)
    wait_until(lambda: sleepers(event._cond) == 1, "a new waiter to wait")
    assert completes(event.set)
    assert results.get(timeout=60) is True
    join_all([again])


def test_condition_notify_skips_killed_sleepers(ctx):
    cond = ctx.Condition()
    sleeping, woken = ctx.Semaphore(0), ctx.Semaphore(0)
    victims = [start(ctx, h.cond_sleeper, cond, sleeping, woken) for _ in range(2)]
    live = [start(ctx, h.cond_sleeper, cond, sleeping, woken) for _ in range(2)]
    for _ in range(4):
        assert sleeping.acquire(timeout=60)
    wait_until(lambda: sleepers(cond) == 4, "four sleepers")
    for p in victims:
        p.kill()
    assert completes(h.notify_under_lock, cond, 1), "notify() hangs on killed sleepers"
    assert woken.acquire(timeout=60)
    assert not woken.acquire(timeout=0.2)  # one live sleeper, not two
    assert completes(h.notify_under_lock, cond, SEM_VALUE_MAX)
    assert woken.acquire(timeout=60)
    join_all(live)
    join_all(victims, expect=-signal.SIGKILL)
    assert completes(h.notify_under_lock, cond, 1)
    assert repr(cond).endswith(", 0)>")


def test_condition_sleeper_killed_while_notify_waits_for_it(ctx):
    # The victim is stopped, so it cannot take its wake-up: notify() waits for
    # it, alive; then it is killed, and notify() must notice and return.
    cond = ctx.Condition()
    sleeping, woken = ctx.Semaphore(0), ctx.Semaphore(0)
    victim = start(ctx, h.cond_sleeper, cond, sleeping, woken)
    live = start(ctx, h.cond_sleeper, cond, sleeping, woken)
    for _ in range(2):
        assert sleeping.acquire(timeout=60)
    wait_until(lambda: sleepers(cond) == 2, "two sleepers")
    os.kill(victim.pid, signal.SIGSTOP)
    notifier = threading.Thread(target=h.notify_under_lock, args=(cond, SEM_VALUE_MAX))
    notifier.start()
    wait_until(lambda: sleepers(cond) == 1, "the live sleeper to take its wake-up")
    victim.kill()
    notifier.join(60)
    assert not notifier.is_alive(), "notify_all() hangs on a sleeper killed meanwhile"
    assert woken.acquire(timeout=60)
    join_all([live])
    join_all([victim], expect=-signal.SIGKILL)


def test_sleepers_killed_at_any_moment_around_notify_all(ctx):
    # The kill lands, at random, before notify_all(), while it waits for the
    # victim, while the victim takes its wake-up, or after; never while the
    # victim holds the lock (nothing is promised then), because the notifier
    # keeps the lock until the victim is dead.
    rng = random.Random(11)
    for _ in range(8):
        cond = ctx.Condition(ctx.Lock())
        sleeping, woken = ctx.Semaphore(0), ctx.Semaphore(0)
        procs = [start(ctx, h.cond_sleeper, cond, sleeping, woken) for _ in range(3)]
        for _ in procs:
            assert sleeping.acquire(timeout=60)
        wait_until(lambda cond=cond: sleepers(cond) == 3, "three sleepers")
        victim = procs.pop(rng.randrange(3))
        notified, victim_dead = threading.Event(), threading.Event()

        def notify_all_then_hold(cond=cond, notified=notified, victim_dead=victim_dead):
            with cond:
                cond.notify_all()
                notified.set()
                victim_dead.wait(60)

        notifier = threading.Thread(target=notify_all_then_hold, daemon=True)
        if rng.random() < 0.5:
            notifier.start()
            for _ in range(rng.randrange(20000)):  # let the kill land anywhere
                pass
            victim.kill()
        else:
            victim.kill()
            notifier.start()
        victim.join(60)
        assert victim.exitcode == -signal.SIGKILL
        victim_dead.set()
        assert notified.wait(60), "notify_all() hangs on a sleeper killed meanwhile"
        notifier.join(60)
        assert woken.acquire(timeout=60) and woken.acquire(timeout=60)
        join_all(procs)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_fork_context_conditions_hold_no_file_descriptor():
    # The registry of sleepers of a fork-context Condition is inherited memory:
    # a program with thousands of Events must not run out of descriptors.
    ctx = mp.get_context("fork")
    before = fd_count()
    events = [ctx.Event() for _ in range(50)]
    conditions = [ctx.Condition() for _ in range(50)]
    assert fd_count() == before
    assert len(events) == len(conditions) == 50


# -- barriers ------------------------------------------------------------------


def test_barrier_with_children(ctx):
    n = 4
    barrier = ctx.Barrier(n + 1, timeout=60)
    results = ctx.Queue()
    procs = [start(ctx, h.barrier_wait, barrier, results) for _ in range(n)]
    mine = barrier.wait()
    indices = sorted([mine] + [results.get(timeout=60) for _ in procs])
    assert indices == list(range(n + 1))
    join_all(procs)
    assert barrier.n_waiting == 0 and not barrier.broken
    assert barrier.parties == n + 1


def test_barrier_many_passes_and_action(ctx):
    done = ctx.Semaphore(0)
    barrier = ctx.Barrier(3, action=functools.partial(h.release, done), timeout=60)
    results = ctx.Queue()
    procs = [start(ctx, h.barrier_passes, barrier, 20, results) for _ in range(2)]
    for _ in range(20):
        barrier.wait()
    pids = {results.get(timeout=60) for _ in procs}
    assert pids == {p.pid for p in procs}
    join_all(procs)
    # The action ran once per pass, in whichever process came last.
    for _ in range(20):
        assert done.acquire(False)
    assert not done.acquire(False)


def test_barrier_timeout_breaks_it(ctx):
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    p = start(ctx, h.barrier_wait_expect_broken, barrier, results, 60)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.2)  # the third party never comes
    assert barrier.broken
    assert results.get(timeout=60) == "broken"
    join_all([p])
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0


def test_barrier_abort_seen_by_child(ctx):
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    p = start(ctx, h.barrier_wait_expect_broken, barrier, results)
    barrier.abort()
    assert results.get(timeout=60) == "broken"
    join_all([p])
    assert barrier.broken


def test_barrier_default_timeout_and_bad_parties(ctx):
    barrier = ctx.Barrier(2, timeout=0.05)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    with pytest.raises(ValueError):
        ctx.Barrier(0)


def test_single_party_barrier(ctx):
    barrier = ctx.Barrier(1)
    assert barrier.wait() == 0
    assert barrier.wait() == 0


# -- sharing rules -------------------------------------------------------------


@pytest.mark.parametrize(
    "factory", ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event"]
)
def test_pickling_outside_spawning_is_refused(ctx, factory):
    obj = getattr(ctx, factory)()
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(obj)


def test_pickling_barrier_outside_spawning_is_refused(ctx):
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(ctx.Barrier(2))


def test_fork_context_lock_cannot_go_to_a_spawned_child():
    lock = mp.get_context("fork").Lock()
    p = mp.get_context("spawn").Process(target=h.release, args=(lock,))
    with pytest.raises(RuntimeError, match="created in a fork context"):
        p.start()


def test_named_semaphores_are_unlinked(ctx):
    lock = ctx.Lock()
    name = lock._semlock.name
    if ctx.get_start_method() == "fork":
        assert name is None  # unlinked at creation
        return
    assert name.startswith("/mp-")
    del lock
    import gc

    gc.collect()
    with pytest.raises(FileNotFoundError):
        synchronize.sem_unlink(name)


def test_default_context_when_ctx_is_none():
    lock = synchronize.Lock()
    assert lock.acquire(False)
    lock.release()
    event = synchronize.Event(ctx=None)
    event.set()
    assert event.is_set()
