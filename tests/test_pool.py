"""multiprocess.pool: the Pool and ThreadPool API, under every start method."""

from __future__ import annotations

import gc
import os
import pickle
import threading
import warnings

import _pool_helpers as h
import pytest

import multiprocess
import multiprocess.dummy
from multiprocess import pool as mpool

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def pool(ctx):
    p = ctx.Pool(2)
    yield p
    p.terminate()
    p.join()


def test_map_apply_starmap(pool):
    assert pool.map(h.square, range(10)) == [x * x for x in range(10)]
    assert pool.map(h.square, range(100), chunksize=7) == [x * x for x in range(100)]
    assert pool.apply(h.add, (2, 3)) == 5
    assert pool.apply(h.add, (), {"a": 1, "b": 2}) == 3
    assert pool.starmap(h.add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(h.add, [(1, 2)] * 30, chunksize=4).get(30) == [3] * 30
    assert pool.map_async(h.square, range(5)).get(30) == [0, 1, 4, 9, 16]
    assert pool.apply_async(h.square, (9,)).get(30) == 81


def test_seed_lambda_example(pool):
    # The example of the original README, verbatim.
    assert pool.map(lambda x: (lambda y: y**2)(x) + x, range(10)) == [  # noqa: PLC3002
        0,
        2,
        6,
        12,
        20,
        30,
        42,
        56,
        72,
        90,
    ]


def test_lambdas_and_closures_everywhere(ctx):
    offset = 10

    def add_offset(x):
        return x + offset

    class Local:
        def __init__(self, v):
            self.v = v

    with ctx.Pool(2, initializer=lambda: None) as p:
        assert p.map(add_offset, range(3)) == [10, 11, 12]
        assert list(p.imap(add_offset, range(3))) == [10, 11, 12]
        assert list(p.imap(add_offset, range(6), chunksize=4)) == list(range(10, 16))
        assert sorted(p.imap_unordered(lambda x: x * 3, range(4))) == [0, 3, 6, 9]
        assert p.apply_async(lambda a, b: a * b + offset, (2, 3)).get(30) == 16
        assert p.starmap(lambda a, b: a - b, [(5, 1), (7, 2)]) == [4, 5]
        assert [o.v for o in p.map(Local, [1, 2])] == [1, 2]


def test_a_changed_closure_is_pickled_again(pool):
    value = 1
    f = lambda x: x + value
    assert pool.apply(f, (1,)) == 2
    value = 100
    assert pool.apply(f, (1,)) == 101
    assert [r.get(30) for r in [pool.apply_async(f, (i,)) for i in range(20)]] == [
        i + 100 for i in range(20)
    ]


def test_function_pickled_once_per_map(pool):
    h.CountingCallable.pickled = 0
    assert pool.map(h.CountingCallable(), range(50), chunksize=1) == list(range(1, 51))
    assert h.CountingCallable.pickled == 1
    assert list(pool.imap(h.CountingCallable(), range(20))) == list(range(1, 21))
    assert h.CountingCallable.pickled == 2


def test_callbacks(pool):
    done = threading.Event()
    got = []

    def callback(value):
        got.append(("ok", value))
        done.set()

    def error_callback(exc):
        got.append(("error", type(exc)))
        done.set()

    pool.apply_async(h.square, (4,), callback=callback, error_callback=error_callback)
    assert done.wait(30)
    done.clear()
    pool.apply_async(h.raise_value_error, (1,), callback=callback, error_callback=error_callback)
    assert done.wait(30)
    done.clear()
    pool.map_async(h.square, [1, 2], callback=callback).wait(30)
    assert done.wait(30)
    done.clear()
    pool.map_async(int, ["x"], error_callback=error_callback).wait(30)
    assert done.wait(30)
    assert got == [("ok", 16), ("error", ValueError), ("ok", [1, 4]), ("error", ValueError)]


def test_callback_that_raises_does_not_stop_the_pool(pool, capsys):
    r = pool.apply_async(h.square, (3,), callback=lambda v: 1 / 0)
    assert r.get(30) == 9
    assert pool.map(h.square, [2]) == [4]
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_worker_exception_carries_remote_traceback(pool):
    with pytest.raises(ValueError, match="bad value 7") as info:
        pool.apply(h.raise_value_error, (7,))
    cause = info.value.__cause__
    assert isinstance(cause, mpool.RemoteTraceback)
    assert "raise ValueError" in cause.tb
    with pytest.raises(ValueError):
        pool.map(h.raise_value_error, range(3))


def test_imap_order_and_exceptions_in_the_iterable(pool):
    assert list(pool.imap(h.square, range(50))) == [x * x for x in range(50)]
    assert list(pool.imap(h.square, range(50), chunksize=8)) == [x * x for x in range(50)]
    assert sorted(pool.imap_unordered(h.square, range(50), chunksize=3)) == sorted(
        x * x for x in range(50)
    )

    def gen():
        yield 1
        yield 2
        raise KeyError("from the iterable")

    it = pool.imap(h.square, gen())
    assert next(it) == 1
    assert next(it) == 4
    with pytest.raises(KeyError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_empty_iterables(pool):
    assert pool.map(h.square, []) == []
    assert pool.starmap(h.add, []) == []
    assert list(pool.imap(h.square, [])) == []
    assert list(pool.imap_unordered(h.square, [])) == []
    assert pool.map_async(h.square, [], chunksize=1).get(30) == []


def test_get_timeout_ready_successful_and_next_timeout(ctx):
    event = ctx.Event()
    with ctx.Pool(1, initializer=h.init_with_event, initargs=(event,)) as p:
        r = p.apply_async(h.wait_for_event, (5,))
        with pytest.raises(multiprocess.TimeoutError):
            r.get(timeout=0.05)
        assert not r.ready()
        with pytest.raises(ValueError, match="not ready"):
            r.successful()
        it = p.imap(h.wait_for_event, [1, 2])
        with pytest.raises(multiprocess.TimeoutError):
            it.next(timeout=0.05)
        event.set()
        assert r.get(30) == 5
        assert r.ready() and r.successful()
        assert list(it) == [1, 2]


def test_closed_and_terminated_pools_refuse_work(ctx):
    p = ctx.Pool(1)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    for call in (
        lambda: p.apply_async(h.square, (1,)),
        lambda: p.map(h.square, [1]),
        lambda: p.imap(h.square, [1]),
    ):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    p.join()
    p.terminate()
    with pytest.raises(ValueError), p:
        pass


def test_close_finishes_pending_work(ctx):
    p = ctx.Pool(2)
    results = [p.apply_async(h.square, (i,)) for i in range(20)]
    p.close()
    p.join()
    assert [r.get(0) for r in results] == [i * i for i in range(20)]
    assert p._pool == []


def test_context_manager_terminates_and_fails_pending(ctx):
    event = ctx.Event()
    with ctx.Pool(1, initializer=h.init_with_event, initargs=(event,)) as p:
        r = p.apply_async(h.wait_for_event, (1,))
    assert p._state == mpool.TERMINATE
    with pytest.raises(mpool.PoolTerminatedError):
        r.get(30)
    p.join()


def test_maxtasksperchild_replaces_workers(ctx):
    with ctx.Pool(1, maxtasksperchild=2) as p:
        pids = [p.apply(h.pid_of) for _ in range(6)]
        assert len(set(pids)) == 3
        assert p.map(h.pid_of, range(4), chunksize=1)
        p.close()
        p.join()


def test_argument_validation(ctx):
    for n in (0, -1):
        with pytest.raises(ValueError):
            ctx.Pool(n)
    for value in (0, -1, 0.5, "12"):
        with pytest.raises(ValueError):
            ctx.Pool(1, maxtasksperchild=value)
    with pytest.raises(TypeError):
        ctx.Pool(1, initializer=1)


def test_pool_cannot_be_pickled(pool):
    with pytest.raises(NotImplementedError, match="cannot be passed between processes"):
        pickle.dumps(pool)


def test_private_attributes_clients_use(ctx):
    with ctx.Pool(3) as p:
        assert len(p._pool) == 3
        assert all(w.pid and w.is_alive() for w in p._pool)
        assert p._state == mpool.RUN
        assert p._ctx is ctx
        assert p._processes == 3
        assert isinstance(p._cache, dict)
        p._my_attribute = "pathos sets its own"
        assert p.map(h.pid_of, range(30), chunksize=1)
        assert set(p.map(h.pid_of, range(30), chunksize=1)) <= {w.pid for w in p._pool}
        assert "pool_size=3" in repr(p)


def test_unclosed_running_pool_warns(ctx):
    p = ctx.Pool(1)
    p.terminate()
    p.join()
    p._state = mpool.RUN  # as the standard library's test does
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
    assert any(
        issubclass(w.category, ResourceWarning) and "unclosed running" in str(w.message)
        for w in caught
    )


def test_serializer_is_looked_up_at_call_time(ctx):
    with ctx.Pool(1) as p:
        ctx.set_serializer("pickle")
        try:
            with pytest.raises(Exception) as info:
                p.map(lambda x: x, [1])
            assert isinstance(info.value, (pickle.PicklingError, TypeError, AttributeError))
            assert p.map(h.square, [3]) == [9]
        finally:
            ctx.set_serializer(None)
        assert p.map(lambda x: x + 1, [1]) == [2]


#
# ThreadPool and multiprocess.dummy
#


def test_threadpool_api():
    with mpool.ThreadPool(3) as tp:
        assert tp.map(h.square, range(10)) == [x * x for x in range(10)]
        lock = threading.Lock()  # objects are shared, not pickled
        assert tp.apply(lambda l: l is lock, (lock,))
        assert list(tp.imap(h.square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(tp.imap_unordered(h.square, range(5))) == [0, 1, 4, 9, 16]
        assert tp.starmap(h.add, [(1, 2)]) == [3]
        with pytest.raises(ValueError) as info:
            tp.apply(h.raise_value_error, (1,))
        assert info.value.__cause__ is None  # not wrapped for threads
        assert len(tp._pool) == 3


def test_threadpool_runs_the_tasks_of_one_call_on_all_its_threads():
    # Each task waits until three of them meet: the tasks of a call that ran on one
    # thread while the other threads slept would break the barrier.
    barrier = threading.Barrier(3)

    def meet(x):
        barrier.wait(10)
        return x

    with mpool.ThreadPool(3) as tp:
        for _ in range(5):
            assert tp.map(meet, range(3), chunksize=1) == [0, 1, 2]
            assert sorted(tp.imap_unordered(meet, range(3))) == [0, 1, 2]


def test_dummy_pool_and_initializer():
    seen = []
    p = multiprocess.dummy.Pool(2, initializer=seen.append, initargs=(os.getpid(),))
    assert p.map(h.square, [1, 2]) == [1, 4]
    p.close()
    p.join()
    assert seen == [os.getpid()] * 2


def test_threadpool_initializer_error_breaks_the_pool():
    tp = mpool.ThreadPool(2, initializer=h.init_raises)
    try:
        with pytest.raises(mpool.BrokenPoolError) as info:
            tp.map(h.square, range(4))
        assert isinstance(info.value.__cause__, ValueError)
    finally:
        tp.terminate()
        tp.join()


def test_threadpool_terminate_fails_pending_without_waiting():
    gate = threading.Event()
    tp = mpool.ThreadPool(1)
    running = tp.apply_async(gate.wait, (30,))
    queued = tp.apply_async(h.square, (2,))
    tp.terminate()
    with pytest.raises(mpool.PoolTerminatedError):
        queued.get(5)
    gate.set()
    tp.join()
    assert running.ready()


def test_large_payloads_results_and_functions_do_not_deadlock(pool):
    big = bytes(300_000)  # captured: the function itself is large

    def grow(b):
        return b + big

    assert pool.map(h.identity, range(200), chunksize=1)  # workers now count as fast
    payloads = [bytes([i]) * (1 << 20) for i in range(8)]
    out = list(pool.imap(grow, payloads + [b"x"] * 20 + payloads))
    assert [len(b) for b in out] == [(1 << 20) + 300_000] * 8 + [300_001] * 20 + [
        (1 << 20) + 300_000
    ] * 8
    assert out[3][:1] == b"\x03"
