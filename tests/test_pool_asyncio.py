"""asyncio on the Pool: awaitable results and ``async for`` over imap, under every start
method and on a ThreadPool.  Ordering is forced with events, never with sleeps."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import types

import _pool_asyncio_helpers as ah
import _pool_helpers as h
import pytest
from conftest import START_METHODS

import multiprocess
import multiprocess.dummy
import multiprocess.pool as mpool

WAIT = 60


@pytest.fixture(params=[*START_METHODS, "threads"])
def pools(request):
    """Pool, Event and Value of one start method (as the ``ctx`` fixture), or of threads.

    ``pools.Pool(n, initializer, initargs)`` makes a process Pool of that start
    method, or a ThreadPool for "threads"; Event and Value fit it.
    """
    if request.param == "threads":
        shared = multiprocess.get_context()
        return types.SimpleNamespace(
            Pool=multiprocess.dummy.Pool, Event=threading.Event, Value=shared.Value
        )
    return multiprocess.get_context(request.param)


def _sync(pools):
    return pools.Event(), pools.Event(), pools.Value("i", 0)


async def _await(awaitable):
    return await awaitable


async def _collect(aiterable):
    """Every item of an async iterable, with the exceptions in their place."""
    out = []
    iterator = aiterable.__aiter__()
    while True:
        try:
            out.append(await iterator.__anext__())
        except StopAsyncIteration:
            return out
        except Exception as e:  # noqa: BLE001
            out.append(e)


def test_await_results_gives_their_values(pools):
    async def main(pool):
        assert await pool.apply_async(h.add, (2, 3)) == 5
        assert await pool.apply_async(h.add, (), {"a": 1, "b": 2}) == 3
        assert await pool.map_async(h.square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert await pool.map_async(h.square, []) == []
        assert await pool.starmap_async(h.add, [(1, 2), (3, 4)]) == [3, 7]
        # A result awaited again, or once ready, or by several tasks, gives its value each time.
        result = pool.apply_async(h.square, (6,))
        assert await asyncio.gather(_await(result), _await(result)) == [36, 36]
        assert await result == 36
        assert result.get(0) == 36

    with pools.Pool(2) as pool:
        asyncio.run(main(pool))


def test_await_raises_the_task_exception(pools):
    async def main(pool):
        with pytest.raises(ValueError, match="bad value 7"):
            await pool.apply_async(h.raise_value_error, (7,))
        with pytest.raises(KeyError, match="odd item 5"):
            await pool.map_async(ah.fail_on_odd, [0, 2, 5, 4], chunksize=1)
        with pytest.raises(KeyError, match="odd item 3"):
            await pool.starmap_async(ah.fail_on_odd, [(2,), (3,)])
        # The pool goes on.
        assert await pool.apply_async(h.square, (5,)) == 25

    with pools.Pool(2) as pool:
        asyncio.run(main(pool))


@pytest.mark.parametrize("chunksize", [1, 3])
def test_async_for_over_imap_gives_results_in_order(pools, chunksize):
    async def main(pool):
        xs = range(20)
        assert [x async for x in pool.imap(h.square, xs, chunksize)] == [x * x for x in xs]
        unordered = [x async for x in pool.imap_unordered(h.square, xs, chunksize)]
        assert sorted(unordered) == [x * x for x in xs]
        assert [x async for x in pool.imap(h.square, [], chunksize)] == []
        # A failed task raises at its place; the others come after it.
        out = await _collect(pool.imap(ah.fail_on_odd, range(6)))
        assert [type(x) for x in out[1::2]] == [KeyError] * 3
        assert out[0::2] == [0, 4, 16]

    with pools.Pool(2) as pool:
        asyncio.run(main(pool))


def test_async_for_imap_orders_by_input_imap_unordered_by_completion(pools):
    # Item 1 runs first; item 0 runs on until the test says go.
    async def main(pool, started, go):
        loop = asyncio.get_running_loop()
        ordered = pool.imap(ah.item_0_waits, [0, 1])
        first = asyncio.ensure_future(ordered.__anext__())
        assert await loop.run_in_executor(None, started.wait, WAIT)  # item 1 is done
        go.set()
        assert [await first, await ordered.__anext__()] == [0, 10]
        started.clear()
        go.clear()
        # Unordered: item 1 comes first, as item 0 cannot end before the go.
        unordered = pool.imap_unordered(ah.item_0_waits, [0, 1])
        assert await unordered.__anext__() == 10
        go.set()
        assert [x async for x in unordered] == [0]

    started, go, ran = _sync(pools)
    with pools.Pool(2, ah.init_sync, (started, go, ran)) as pool:
        asyncio.run(main(pool, started, go))


def test_the_event_loop_runs_while_tasks_are_awaited(pools):
    started, go, ran = _sync(pools)

    async def main(pool):
        loop = asyncio.get_running_loop()
        threads = threading.active_count()
        blocked = pool.apply_async(ah.announce_then_wait, ("done",))
        queued = [pool.apply_async(h.square, (i,)) for i in range(10)]
        waiting = [asyncio.ensure_future(_await(r)) for r in [blocked, *queued]]
        await asyncio.sleep(0)  # every awaiting task has run up to its await
        assert not any(task.done() for task in waiting)
        # Eleven awaits hold no thread.
        assert threading.active_count() == threads
        # The task runs in the pool and waits for this loop to say go: had an await
        # blocked the loop, the go would never come.
        assert await loop.run_in_executor(None, started.wait, WAIT)
        assert not waiting[0].done()
        go.set()
        assert await asyncio.gather(*waiting) == ["done"] + [i * i for i in range(10)]

    with pools.Pool(1, ah.init_sync, (started, go, ran)) as pool:
        asyncio.run(main(pool))


def _occupied_pool(pools):
    """A pool of one worker, busy with a task that waits for go: later tasks are not started."""
    started, go, ran = _sync(pools)
    pool = pools.Pool(1, ah.init_sync, (started, go, ran))
    blocker = pool.apply_async(ah.announce_then_wait, ("blocker",))
    assert started.wait(WAIT)
    return pool, blocker, go, ran


CANCELLED_CALLS = {
    "apply_async": lambda pool: _await(pool.apply_async(ah.count_run, (1,))),
    "map_async": lambda pool: _await(pool.map_async(ah.count_run, range(6), chunksize=1)),
    "starmap_async": lambda pool: _await(pool.starmap_async(ah.count_run, [(1,), (2,)])),
    "imap": lambda pool: _collect(pool.imap(ah.count_run, range(6))),
    "imap chunks": lambda pool: _collect(pool.imap(ah.count_run, range(6), chunksize=2)),
    "imap_unordered": lambda pool: _collect(pool.imap_unordered(ah.count_run, range(6))),
}


@pytest.mark.parametrize("call", CANCELLED_CALLS)
def test_cancelling_the_await_drops_tasks_not_started(pools, call):
    pool, blocker, go, ran = _occupied_pool(pools)
    with pool:

        async def main():
            task = asyncio.ensure_future(CANCELLED_CALLS[call](pool))
            await asyncio.sleep(0)  # it awaits now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        go.set()
        assert blocker.get(WAIT) == "blocker"
        # The pool goes on, and its worker got these tasks after the dropped ones.
        assert pool.apply(h.square, (3,)) == 9
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
        pool.close()
        pool.join()
    # Only the blocker ran: the cancelled call's tasks never did.
    assert ran.value == 1


def test_a_cancelled_call_fails_with_cancelled_error(pools):
    pool, blocker, go, ran = _occupied_pool(pools)
    with pool:
        errors = []
        result = pool.apply_async(ah.count_run, (1,), error_callback=errors.append)
        iterator = pool.imap(ah.count_run, range(3))

        async def main():
            tasks = [
                asyncio.ensure_future(_await(result)),
                asyncio.ensure_future(_collect(iterator)),
            ]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
        # Whoever else holds the result or the iterator learns why it ends.
        assert result.ready()
        with pytest.raises(concurrent.futures.CancelledError, match="was cancelled"):
            result.get(0)
        assert [type(e) for e in errors] == [concurrent.futures.CancelledError]
        with pytest.raises(concurrent.futures.CancelledError):
            next(iterator)
        assert list(iterator) == []
        go.set()
        assert blocker.get(WAIT) == "blocker"
    assert ran.value == 1


def test_cancelling_the_await_of_a_running_task_lets_it_finish(pools):
    # What is not cancelled: a task a worker is running runs to its end (its value is dropped).
    pool, blocker, go, ran = _occupied_pool(pools)
    with pool:

        async def main():
            task = asyncio.ensure_future(_await(blocker))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        with pytest.raises(concurrent.futures.CancelledError):
            blocker.get(0)
        go.set()
        # The next task goes to the same (only) worker once the blocker has finished.
        assert pool.apply(ah.count_run, ("after",)) == "after"
        assert ran.value == 2


def test_cancel_racing_completion_leaves_the_pool_sound(pools):
    # Cancel at every moment of a short task's life: the await either gives the value
    # or is cancelled, and the pool stays usable and ends cleanly.
    cancelled = 0

    async def main(pool):
        nonlocal cancelled
        for i in range(150):
            result = pool.apply_async(h.square, (i,))
            task = asyncio.ensure_future(_await(result))
            for _ in range(i % 3):
                await asyncio.sleep(0)
            task.cancel()
            try:
                assert await task == i * i
            except asyncio.CancelledError:
                cancelled += 1
        assert await pool.map_async(h.square, range(5)) == [0, 1, 4, 9, 16]

    pool = pools.Pool(2)
    try:
        asyncio.run(main(pool))
        pool.close()
        pool.join()
        assert pool._cache == {}
    finally:
        pool.terminate()
    assert cancelled > 0


def test_results_are_awaited_from_any_loop(pools):
    with pools.Pool(2) as pool:
        result = pool.apply_async(h.square, (4,))
        out = []
        # A loop in another thread, then a new loop in this one.
        thread = threading.Thread(target=lambda: out.append(asyncio.run(_await(result))))
        thread.start()
        thread.join(WAIT)
        loop = asyncio.new_event_loop()
        try:
            out.append(loop.run_until_complete(_await(pool.map_async(h.square, [1, 2]))))
        finally:
            loop.close()
        assert out == [16, [1, 4]]


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_a_worker_killed_while_awaited_raises_terminated_worker_error(ctx, how):
    async def main(pool):
        with pytest.raises(mpool.TerminatedWorkerError) as info:
            await pool.apply_async(h.die_now, (how,))
        assert info.value.exitcode in (-9, 1)
        out = await _collect(pool.imap(functools.partial(h.die_at, target=2, how=how), range(4)))
        assert out[:2] == [0, 1] and out[3] == 9
        assert isinstance(out[2], mpool.TerminatedWorkerError)
        # A replacement worker runs the next call.
        assert await pool.apply_async(h.square, (3,)) == 9

    with ctx.Pool(2) as pool:
        asyncio.run(main(pool))
