"""multiprocess.futures.ProcessPoolExecutor: the concurrent.futures face of the Pool's engine.

Every test runs under fork, spawn and forkserver (the ``ctx`` fixture).  Faults are
per call: a worker that dies fails only its future, with an exception that is both
the pool's TerminatedWorkerError and concurrent.futures' BrokenProcessPool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import itertools
import os
import pickle
import signal
import subprocess
import sys
import threading
import weakref

import _futures_helpers as fh
import _pool_helpers as h
import pytest

from multiprocess import pool as mpool
from multiprocess.futures import ProcessPoolExecutor, WorkerDiedError

pytestmark = pytest.mark.timeout(120)

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool
EXIT_CODES = {"sigkill": -signal.SIGKILL, "segfault": -signal.SIGSEGV, "exit": 1}


def blocking_executor(ctx, workers=1):
    """An executor whose tasks fh.block() wait for ``release``; ``started`` says one runs."""
    started, release = ctx.Event(), ctx.Event()
    executor = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    )
    return executor, started, release


def collect(iterator):
    """Everything an iterator yields, with the exception that ends it last."""
    out = []
    try:
        out.extend(iterator)
    except Exception as e:  # noqa: BLE001
        out.append(e)
    return out


def test_submit_returns_real_futures_and_sends_lambdas_and_closures(ctx):
    k = 10
    done = []
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        futures = [executor.submit(lambda x: x + k, i) for i in range(20)]
        futures.append(executor.submit(h.add, 1, b=2))
        futures[0].add_done_callback(done.append)
        assert all(type(f) is concurrent.futures.Future for f in futures)
        finished = {f.result() for f in concurrent.futures.as_completed(futures, timeout=60)}
        assert finished == set(range(10, 30)) | {3}
        _, not_done = concurrent.futures.wait(futures, timeout=60)
        assert not not_done
        assert futures[20].result() == 3
    assert done == [futures[0]]


def test_every_context_makes_executors_of_its_start_method(ctx):
    with ctx.ProcessPoolExecutor(1) as executor:
        assert isinstance(executor, ProcessPoolExecutor)
        assert executor._mp_context.get_start_method() == ctx.get_start_method()
        assert executor.submit(lambda: "ok").result(timeout=60) == "ok"


def test_many_threads_submitting_at_once_get_every_result(ctx):
    # The window of calls handed to the engine is refilled both by submitters and
    # by the engine's thread as calls finish: they race for it here.
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        results = {}

        def submit_many(t):
            futures = [executor.submit(h.add, t, i) for i in range(500)]
            results[t] = [f.result(timeout=60) for f in futures]

        threads = [threading.Thread(target=submit_many, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert results == {t: [t + i for i in range(500)] for t in range(4)}


def test_workers_start_as_calls_need_them_except_under_fork(ctx):
    barrier = ctx.Barrier(3)
    with ProcessPoolExecutor(
        5, mp_context=ctx, initializer=fh.init_barrier, initargs=(barrier,)
    ) as executor:
        if ctx.get_start_method() == "fork":
            # As the stdlib: forking later would fork a parent with threads running.
            assert len(executor._processes) == 5
            return
        assert executor._processes == {}
        # Three calls that can only finish together: three workers, not five.
        futures = [executor.submit(fh.meet, i) for i in range(3)]
        assert [f.result(timeout=60) for f in futures] == [0, 1, 2]
        assert len(executor._processes) == 3
    with ProcessPoolExecutor(5, mp_context=ctx) as executor:
        squares = [executor.submit(h.square, i).result(timeout=60) for i in range(5)]
        assert squares == [0, 1, 4, 9, 16]
        assert len(executor._processes) == 1  # one call at a time: one worker


def test_a_call_never_waits_behind_a_busy_worker_while_another_starts(ctx):
    # After short calls a worker may hold several at once; not while workers
    # are still to come: three calls that can only finish together must get
    # three workers, even right after a short call warmed up the first one.
    for _ in range(3):
        barrier = ctx.Barrier(3)
        with ProcessPoolExecutor(
            3, mp_context=ctx, initializer=fh.init_barrier, initargs=(barrier,)
        ) as executor:
            for i in range(20):
                assert executor.submit(h.square, i).result(timeout=60) == i * i
            futures = [executor.submit(fh.meet, i) for i in range(3)]
            assert [f.result(timeout=60) for f in futures] == [0, 1, 2]


def test_asyncio_awaits_our_futures(ctx):
    async def main(executor):
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(executor, h.square, 7)
        b = await asyncio.wrap_future(executor.submit(lambda: "lambda"))
        return a, b

    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        assert asyncio.run(main(executor)) == (49, "lambda")


@pytest.mark.parametrize("chunksize", [1, 3, 50])
def test_map_yields_results_in_order(ctx, chunksize):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        assert list(executor.map(h.square, range(20), chunksize=chunksize)) == [
            x * x for x in range(20)
        ]
        assert list(executor.map(lambda a, b: a - b, range(5), [1] * 9, chunksize=chunksize)) == [
            -1,
            0,
            1,
            2,
            3,
        ]
        assert list(executor.map(h.square, [], chunksize=chunksize)) == []


def test_map_with_buffersize_reads_its_inputs_lazily(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        results = executor.map(h.square, itertools.count(), buffersize=4)
        assert list(itertools.islice(results, 10)) == [x * x for x in range(10)]
        results.close()


def test_map_raises_at_the_failing_item(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        out = collect(executor.map(_fail_at_3, range(8)))
        assert out[:3] == [0, 1, 4]
        assert isinstance(out[3], ValueError) and len(out) == 4
        assert list(executor.map(h.square, range(3))) == [0, 1, 4]


def test_map_holds_no_result_it_has_yielded(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        results = executor.map(fh.Dummy, range(4))
        first = next(results)
        watched = weakref.ref(first)
        del first
        assert [d.x for d in results] == [1, 2, 3]
        assert watched() is None


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_holds_no_result_it_has_yielded_inside_a_chunk(ctx, chunksize):
    # The iterator reads each chunk's list in C: each item it hands out is
    # dropped from that list at once, as the standard library's iterator does.
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        results = executor.map(fh.Dummy, range(7), chunksize=chunksize)
        for x in range(6):
            item = next(results)
            assert item.x == x
            watched = weakref.ref(item)
            del item
            assert watched() is None
        assert next(results).x == 6
        with pytest.raises(StopIteration):
            next(results)


def test_map_iterator_ends_after_an_error(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        results = executor.map(_fail_at_3, range(9), chunksize=2)
        # Item 3's error fails its whole chunk (items 2 and 3), as in the stdlib.
        assert [next(results) for _ in range(2)] == [0, 1]
        with pytest.raises(ValueError, match="three"):
            next(results)
        # As a generator's: done, although items 4 to 8 have results.
        assert list(results) == []


def test_map_iterator_close_cancels_what_has_not_run(ctx):
    started, release = ctx.Event(), ctx.Event()
    with ProcessPoolExecutor(
        1, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    ) as executor:
        results = executor.map(fh.block, range(6), chunksize=2)
        assert started.wait(60)
        release.set()
        assert next(results) == 0
        results.close()
        assert list(results) == []  # the rest of the chunk in hand is dropped too
        results.close()  # again: nothing more
        assert executor.submit(h.square, 4).result(60) == 16


def test_a_result_that_cannot_be_pickled_fails_its_call_with_a_pickling_error(ctx):
    with ProcessPoolExecutor(1, mp_context=ctx) as executor:
        error = executor.submit(h.make_unpicklable).exception(timeout=60)
        assert isinstance(error, pickle.PicklingError)
        assert isinstance(error, mpool.MaybeEncodingError)
        assert "Unpicklable objects refuse to be pickled" in str(error)
        assert executor.submit(h.square, 5).result(timeout=60) == 25


def _fail_at_3(x):
    if x == 3:
        raise ValueError("three")
    return x * x


@pytest.mark.parametrize("how", sorted(EXIT_CODES))
def test_a_worker_that_dies_in_submit_fails_only_its_future(ctx, how):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        doomed = executor.submit(h.die_now, how)
        others = [executor.submit(h.square, i) for i in range(20)]
        error = doomed.exception(timeout=60)
        assert isinstance(error, WorkerDiedError)
        assert isinstance(error, mpool.TerminatedWorkerError)
        assert isinstance(error, BrokenProcessPool)
        assert error.exitcode == EXIT_CODES[how]
        assert [f.result(timeout=60) for f in others] == [i * i for i in range(20)]
        # A replacement worker runs what comes next.
        assert executor.submit(h.square, 9).result(timeout=60) == 81


@pytest.mark.parametrize("how", sorted(EXIT_CODES))
def test_a_worker_that_dies_in_map_fails_only_its_chunk(ctx, how):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        out = collect(executor.map(h.die_at, range(8), [3] * 8, [how] * 8))
        assert out[:3] == [0, 1, 4]
        assert isinstance(out[3], BrokenProcessPool)
        assert isinstance(out[3], mpool.TerminatedWorkerError)
        assert list(executor.map(h.square, range(8), chunksize=2)) == [x * x for x in range(8)]


def test_an_initializer_that_raises_breaks_the_executor(ctx):
    executor = ProcessPoolExecutor(1, mp_context=ctx, initializer=h.init_raises)
    try:
        try:
            future = executor.submit(h.square, 2)
        except BrokenProcessPool:
            pass  # it broke already
        else:
            with pytest.raises(BrokenProcessPool, match="initializer"):
                future.result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            executor.submit(h.square, 2)
        assert executor._broken
    finally:
        executor.shutdown()


def test_cancel_and_shutdown_cancel_futures_stop_calls_that_have_not_started(ctx):
    executor, started, release = blocking_executor(ctx)
    running = executor.submit(fh.block, "first")
    assert started.wait(60)
    queued = [executor.submit(h.square, i) for i in range(10)]
    assert queued[-1].cancel()
    executor.shutdown(wait=False, cancel_futures=True)
    cancelled = [f for f in queued if f.cancelled()]
    # Only the few calls already handed to the engine (2 per worker) may run.
    assert len(cancelled) >= 8
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(h.square, 1)
    release.set()
    assert running.result(timeout=60) == "first"
    for f in queued:
        if not f.cancelled():
            assert f.result(timeout=60) == queued.index(f) ** 2
    executor.shutdown(wait=True)
    assert all(p.exitcode is not None for p in executor._processes.values())


@pytest.mark.parametrize("stop", ["terminate_workers", "kill_workers"])
def test_stopping_the_workers_fails_running_calls_and_cancels_the_rest(ctx, stop):
    # Looped: the engine's own thread races the stop (it reaps, replaces, signals).
    for _ in range(5):
        executor, started, _release = blocking_executor(ctx)
        running = executor.submit(fh.block, "first")
        assert started.wait(60)
        processes = list(executor._processes.values())
        queued = [executor.submit(h.square, i) for i in range(5)]
        getattr(executor, stop)()
        assert isinstance(running.exception(timeout=60), BrokenProcessPool)
        # Queued calls are cancelled; those already handed over fail, or finished
        # first on a worker started for them meanwhile.
        for i, f in enumerate(queued):
            if not f.cancelled():
                error = f.exception(timeout=60)
                assert isinstance(error, BrokenProcessPool) if error else f.result() == i * i
        assert all(p.exitcode is not None for p in processes)
        if stop == "kill_workers":
            assert [p.exitcode for p in processes] == [-signal.SIGKILL]
        with pytest.raises(RuntimeError, match="after shutdown"):
            executor.submit(h.square, 1)
        executor.shutdown()


def test_map_timeout_counts_from_the_call(ctx):
    executor, _started, release = blocking_executor(ctx)
    try:
        results = executor.map(fh.block, [1, 2], timeout=0.5)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
    finally:
        release.set()
        executor.shutdown()


def test_max_tasks_per_child_replaces_workers(ctx):
    if ctx.get_start_method() == "fork":
        with pytest.raises(ValueError, match="incompatible with the 'fork'"):
            ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=2)
        return
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=2) as executor:
        pids = [executor.submit(h.pid_of).result(timeout=60) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_bad_arguments_raise_clear_errors_and_break_nothing(ctx):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ProcessPoolExecutor(0, mp_context=ctx)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ProcessPoolExecutor(1, mp_context=ctx, initializer=3)
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=0)
    with ProcessPoolExecutor(1, mp_context=ctx) as executor:
        with pytest.raises(ValueError, match="chunksize"):
            executor.map(h.square, range(3), chunksize=0)
        with pytest.raises(ValueError, match="buffersize"):
            executor.map(h.square, range(3), buffersize=0)
        assert list(executor.map(h.square, range(3))) == [0, 1, 4]
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(h.square, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(h.square, range(3))
    executor.shutdown()  # again: nothing more to do


@pytest.mark.parametrize("mode", ["exit", "no-wait"])
def test_interpreter_exit_with_a_call_running_neither_hangs_nor_leaves_workers(ctx, mode):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_futures_exit_script.py")
    done = subprocess.run(
        [sys.executable, script, ctx.get_start_method(), mode],
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails here, not the whole run
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids
    for pid in pids:  # reaped by the script before it exited: gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sys_exit_in_a_call_comes_back_as_its_exception(ctx):
    # As the standard library's executor: the worker sends SystemExit back
    # (the Pool's worker, as the stdlib's Pool, lets it end the worker).
    with ProcessPoolExecutor(1, mp_context=ctx) as executor:
        pid = executor.submit(os.getpid).result(timeout=60)
        with pytest.raises(SystemExit) as info:
            executor.submit(fh.exit_with, 3).result(timeout=60)
        assert info.value.code == 3
        with pytest.raises(SystemExit) as info:
            executor.submit(fh.exit_at_pickle).result(timeout=60)
        assert info.value.code == 7
        with pytest.raises(SystemExit):
            list(executor.map(fh.exit_with, [1, 2], chunksize=2))
        # The same worker goes on.
        assert executor.submit(os.getpid).result(timeout=60) == pid
        # Before the call runs (its arguments unpickled), SystemExit ends the
        # worker, as in the standard library: the call fails as a dead worker's.
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            executor.submit(id, fh.ExitAtUnpickle()).result(timeout=60)
        assert executor.submit(pow, 2, 5).result(timeout=60) == 32


def test_sys_exit_still_ends_a_pool_worker(ctx):
    with ctx.Pool(1) as pool:
        with pytest.raises(mpool.TerminatedWorkerError):
            pool.apply(fh.exit_with, (3,))
        assert pool.apply(pow, (2, 3)) == 8
