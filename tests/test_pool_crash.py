"""The Pool never hangs: a crash matrix, under every start method.

Each row names what goes wrong, how the caller meets it, and the exception it
must produce; then the pool must still work.
"""

from __future__ import annotations

import functools
import os
import signal
import time

import _pool_helpers as h
import pytest

from multiprocess import pool as mpool
from multiprocess.connection import wait
from multiprocess.reduction import SerializationError

pytestmark = pytest.mark.timeout(120)

EXIT_CODES = {"sigkill": -signal.SIGKILL, "segfault": -signal.SIGSEGV, "exit": 1}


def collect(iterator):
    """Everything an iterator yields, with exceptions in their place."""
    out = []
    while True:
        try:
            out.append(next(iterator))
        except StopIteration:
            return out
        except Exception as e:  # noqa: BLE001
            out.append(e)


def crash_during_map(p, how):
    with pytest.raises(mpool.TerminatedWorkerError) as info:
        p.starmap(h.die_at, [(i, 3, how) for i in range(8)], chunksize=1)
    return [info.value]


def crash_during_imap(p, how):
    out = collect(p.imap(functools.partial(h.die_at, target=3, how=how), range(8)))
    # The other results are delivered, in place; the dead worker's task fails.
    assert out[:3] == [0, 1, 4] and out[4:] == [16, 25, 36, 49]
    return [out[3]]


def crash_during_imap_unordered(p, how):
    out = collect(p.imap_unordered(functools.partial(h.die_at, target=3, how=how), range(8)))
    errors = [x for x in out if isinstance(x, BaseException)]
    assert sorted(x for x in out if not isinstance(x, BaseException)) == [0, 1, 4, 16, 25, 36, 49]
    return errors


def crash_during_apply_async(p, how):
    with pytest.raises(mpool.TerminatedWorkerError) as info:
        p.apply_async(h.die_now, (how,)).get(60)
    return [info.value]


CALLS = {
    "map": crash_during_map,
    "imap": crash_during_imap,
    "imap_unordered": crash_during_imap_unordered,
    "apply_async": crash_during_apply_async,
}

# (how the worker dies, where the caller is) -> the error it must produce
WORKER_DEATHS = [(how, call, mpool.TerminatedWorkerError) for how in EXIT_CODES for call in CALLS]


@pytest.mark.parametrize(("how", "call", "expected"), WORKER_DEATHS)
def test_worker_death(ctx, how, call, expected):
    with ctx.Pool(2) as p:
        pids = {w.pid for w in p._pool}
        errors = CALLS[call](p, how)
        assert len(errors) == 1
        error = errors[0]
        assert isinstance(error, expected)
        assert error.exitcode == EXIT_CODES[how]
        assert error.pid in pids
        assert f"pid {error.pid}" in str(error)
        assert "unexpectedly terminated" in str(error)
        assert p.map(abs, [-1]) == [1]
        assert len(p._pool) == 2


def unpicklable_argument_in_map(p):
    with pytest.raises(SerializationError, match=r"item 1 \(<Unpicklable>\)") as info:
        p.map(h.square, [1, h.Unpicklable(), 3])
    return info.value


def unpicklable_argument_in_apply(p):
    with pytest.raises(SerializationError, match=r"argument 1 \(<Unpicklable>\)") as info:
        p.apply_async(h.add, (1, h.Unpicklable())).get(60)
    return info.value


def unpicklable_function(p):
    with pytest.raises(SerializationError, match="function of map") as info:
        p.map(h.Unpicklable(), [1, 2])
    return info.value


def unpicklable_result(p):
    with pytest.raises(
        mpool.MaybeEncodingError, match="Error sending result: '<Unpicklable>'"
    ) as info:
        p.apply(h.make_unpicklable)
    return info.value


def result_fails_to_unpickle(p):
    with pytest.raises(mpool.ResultUnpicklingError) as info:
        p.map(h.make_fails_to_load, range(3))
    assert isinstance(info.value.__cause__, RuntimeError)
    return info.value


def worker_killed_while_idle(p):
    victim = p._pool[0]
    # Wait until it is dead before giving the pool work: a process that is
    # killed while blocked in read() can still consume bytes written in the
    # instant before it dies, and that task would then rightly fail.  A copy
    # of its sentinel, because the pool closes its own once it notices.
    sentinel = os.dup(victim.sentinel)
    try:
        os.kill(victim.pid, signal.SIGKILL)
        assert wait([sentinel], 30) == [sentinel]
    finally:
        os.close(sentinel)
    victim = victim.pid
    deadline = time.monotonic() + 30
    while victim in {w.pid for w in p._pool} and time.monotonic() < deadline:
        p.map(abs, [-1])  # progress, not a sleep: each call is a round trip
    assert victim not in {w.pid for w in p._pool}


# what goes wrong -> the error the caller gets (None: no error, just recovery)
TASK_FAULTS = [
    (unpicklable_argument_in_map, SerializationError),
    (unpicklable_argument_in_apply, SerializationError),
    (unpicklable_function, SerializationError),
    (unpicklable_result, mpool.MaybeEncodingError),
    (result_fails_to_unpickle, mpool.ResultUnpicklingError),
    (worker_killed_while_idle, None),
]


@pytest.mark.parametrize(
    ("fault", "expected"), TASK_FAULTS, ids=[f.__name__ for f, _ in TASK_FAULTS]
)
def test_task_fault(ctx, fault, expected):
    with ctx.Pool(2) as p:
        error = fault(p)
        if expected is None:
            assert error is None
        else:
            assert isinstance(error, expected)
        assert p.map(abs, [-1]) == [1]
        assert p.map(h.square, range(20)) == [x * x for x in range(20)]


# initializer -> what every task then gets, and words the message must contain
BROKEN_STARTS = [
    (h.init_raises, "initializer init_raises raised ValueError"),
    (h.init_exits, "keep dying while they start"),
    (h.init_segfaults, "keep dying while they start"),
]


@pytest.mark.parametrize(
    ("initializer", "message"), BROKEN_STARTS, ids=["raises", "exits", "segfaults"]
)
def test_initializer_failure_breaks_the_pool(ctx, initializer, message):
    p = ctx.Pool(2, initializer=initializer)
    try:
        with pytest.raises(mpool.BrokenPoolError, match=message) as info:
            p.map(h.square, range(4))
        if initializer is h.init_raises:
            assert isinstance(info.value.__cause__, ValueError)
            assert isinstance(info.value.__cause__.__cause__, mpool.RemoteTraceback)
        # No endless respawning: later calls fail at once, and nothing is left running.
        with pytest.raises(mpool.BrokenPoolError):
            p.apply_async(h.square, (1,))
        p.close()
        p.join()
        assert p._pool == []
    finally:
        p.terminate()


def test_terminate_returns_promptly_with_tasks_in_flight(ctx):
    event = ctx.Event()
    p = ctx.Pool(2, initializer=h.init_with_event, initargs=(event,))
    result = p.map_async(h.signal_then_sleep, [60] * 10, chunksize=1)
    assert event.wait(60)  # a task is running
    start = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - start < 10
    with pytest.raises(mpool.PoolTerminatedError):
        result.get(10)
    assert p._pool == []


def test_many_crashes_do_not_break_the_pool(ctx):
    with ctx.Pool(2) as p:
        out = collect(p.imap(functools.partial(h.die_at, target=-1, how="exit"), [-1] * 5 + [2]))
        assert all(isinstance(x, mpool.TerminatedWorkerError) for x in out[:5])
        assert out[5] == 4
        assert p.map(abs, [-1]) == [1]


def test_worker_out_of_reach_is_killed_and_its_task_fails(ctx):
    # A task that closes every descriptor of its worker (its pipes, and under
    # fork and spawn its sentinel's end) and hangs: the pool cannot hear from
    # it again.  Under forkserver the sentinel never fires.  The pool must
    # kill it, fail that task and go on, never wait for it.
    with ctx.Pool(2) as p:
        lost = p.apply_async(h.close_fds_then_hang)
        with pytest.raises(mpool.TerminatedWorkerError, match="could no longer be reached"):
            lost.get(60)
        assert p.map(h.square, range(6)) == [0, 1, 4, 9, 16, 25]
    p.join()
