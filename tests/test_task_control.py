"""Task control: per-item timeouts, memory limits, and faults isolated inside chunks.

Every test runs under fork, spawn and forkserver (the ``ctx`` fixture), on the
Pool and on the executor.  Hung items block on an event that is never set;
workers that die on purpose do so with SIGKILL, which prints nothing.
"""

from __future__ import annotations

import collections
import functools
import math
import os

import _task_control_helpers as h
import pytest

import multiprocess as mp
from multiprocess import pool as mpool
from multiprocess.futures import ProcessPoolExecutor, WorkerDiedError

pytestmark = pytest.mark.timeout(90)

MiB = 1 << 20
linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)"
)


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


def runs(log):
    """How many times each item ran, from the log file the helpers append to."""
    with open(log) as f:
        return collections.Counter(int(line) for line in f)


def worker_rss(ctx):
    """The resident memory of a fresh worker of this start method (a forked one
    counts the parent's pages, a spawned one does not): limits are set above it."""
    with ctx.Pool(1) as p:
        return p.apply(h.rss_of_self)


# -- timeouts: Pool ---------------------------------------------------------------


def test_pool_hung_item_in_chunked_map_fails_alone(ctx, tmp_path):
    log = str(tmp_path / "log")
    with ctx.Pool(2, task_timeout=1) as p:
        with pytest.raises(mp.TaskTimeoutError) as info:
            p.map(functools.partial(h.hang_at, target=5, log=log), range(8), chunksize=4)
        error = info.value
        assert isinstance(error, TimeoutError)
        assert isinstance(error, mp.ProcessError)
        message = str(error)
        assert "item 5 of map(" in message
        assert "hang_at" in message
        assert ") (5) was still running" in message
        assert "task_timeout of 1 s" in message
        assert (error.index, error.timeout) == (5, 1.0)
        # The items after the hung one ran too; the pool goes on.
        assert set(runs(log)) == set(range(8))
        assert p.map(h.square, range(6), chunksize=2) == [0, 1, 4, 9, 16, 25]
        assert len(p._pool) == 2


@pytest.mark.parametrize("api", ["imap", "imap_unordered"])
def test_pool_hung_item_in_chunked_imap_fails_alone(ctx, api):
    with ctx.Pool(2, task_timeout=1) as p:
        out = collect(getattr(p, api)(h.hang_at, range(8), chunksize=4))
    errors = [x for x in out if isinstance(x, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], mp.TaskTimeoutError)
    assert f"item 3 of {api}(hang_at) (3)" in str(errors[0])
    values = [x for x in out if not isinstance(x, BaseException)]
    if api == "imap":
        assert out[:3] == [0, 1, 4] and out[4:] == [16, 25, 36, 49]
    else:
        assert sorted(values) == [0, 1, 4, 16, 25, 36, 49]


def test_pool_hung_item_in_imap_of_single_items(ctx):
    with ctx.Pool(2, task_timeout=1) as p:
        out = collect(p.imap(h.hang_at, range(6)))
    assert out[:3] == [0, 1, 4] and out[4:] == [16, 25]
    assert isinstance(out[3], mp.TaskTimeoutError)
    assert out[3].index == 3


def test_pool_hung_item_in_starmap_names_its_arguments(ctx):
    with ctx.Pool(2) as p:
        with pytest.raises(mp.TaskTimeoutError) as info:
            p.starmap(h.hang_at_pair, [(i, 10 * i) for i in range(6)], 3, task_timeout=0.5)
        assert "item 3 of starmap(hang_at_pair) ((3, 30))" in str(info.value)
        assert p.starmap(h.add, [(1, 2)]) == [3]


def test_pool_per_call_timeout_overrides_the_pool_default(ctx):
    with ctx.Pool(2, task_timeout=3600) as p:
        out = collect(p.imap(h.hang_at, range(6), chunksize=3, task_timeout=0.5))
        assert out[:3] == [0, 1, 4] and out[4:] == [16, 25]
        assert isinstance(out[3], mp.TaskTimeoutError)
        assert out[3].timeout == 0.5
        assert "task_timeout of 0.5 s" in str(out[3])
        result = p.apply_async(h.hang, (1, 2), {"c": 3}, task_timeout=0.5)
        with pytest.raises(mp.TaskTimeoutError) as info:
            result.get(60)
        assert "apply_async(hang)" in str(info.value)
        assert "(1, 2, c=3)" in str(info.value)
        with pytest.raises(mp.TaskTimeoutError):
            p.apply(h.hang, task_timeout=0.5)
        # math.inf: no limit for this call (it completes, as without a timeout).
        assert p.map(h.square, range(4), task_timeout=math.inf) == [0, 1, 4, 9]


def test_pool_async_maps_take_a_timeout(ctx):
    with ctx.Pool(2) as p:
        r1 = p.map_async(h.hang_at, range(4), 2, task_timeout=0.5)
        r2 = p.starmap_async(h.hang_at_pair, [(3, 0), (4, 0)], task_timeout=0.5)
        for r in (r1, r2):
            with pytest.raises(mp.TaskTimeoutError):
                r.get(60)


# -- a worker that dies inside a chunk ---------------------------------------------


def test_pool_sigkill_inside_a_chunk_fails_only_that_item(ctx, tmp_path):
    log = str(tmp_path / "log")
    with ctx.Pool(2) as p:
        out = collect(p.imap(functools.partial(h.die_at, target=5, log=log), range(8), 4))
        assert out[:5] == [0, 1, 4, 9, 16] and out[6:] == [36, 49]
        error = out[5]
        assert isinstance(error, mpool.TerminatedWorkerError)
        assert error.exitcode == -9
        assert "item 5 of imap(" in str(error) and "die_at" in str(error)
        # The item before it in its chunk ran again (its result died with the
        # worker), those after it once, the other chunk once.  Item 5 ran once
        # if the pool tracked the chunk's items, twice if not (see _isolate).
        count = runs(log)
        assert count[5] in (1, 2)
        del count[5]
        assert count == {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 6: 1, 7: 1}
        with pytest.raises(mpool.TerminatedWorkerError) as info:
            p.map(functools.partial(h.die_at, target=2), range(8), chunksize=4)
        assert "item 2 of map(" in str(info.value)
        assert p.map(h.square, range(4)) == [0, 1, 4, 9]


def test_pool_sigkill_inside_a_tracked_chunk_runs_the_item_once(ctx, tmp_path):
    """With a task_timeout (or a memory limit) every item is tracked as it starts."""
    log = str(tmp_path / "log")
    with ctx.Pool(2, task_timeout=600) as p:
        work = functools.partial(h.die_at, target=5, log=log)
        with pytest.raises(mpool.TerminatedWorkerError, match=r"item 5 of map\("):
            p.map(work, range(8), chunksize=4)
    assert runs(log) == {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 1, 6: 1, 7: 1}


def test_pool_two_deaths_in_one_chunk(ctx):
    """The re-run of a chunk's other items is itself isolated."""

    with ctx.Pool(2) as p:
        out = collect(p.imap(functools.partial(h.die_at, target=(1, 3)), range(6), chunksize=6))
    assert [type(x) for x in out[1:4:2]] == [mpool.TerminatedWorkerError] * 2
    assert [out[0], out[2], out[4], out[5]] == [0, 4, 16, 25]


def test_pool_plain_exception_still_fails_its_whole_chunk(ctx):
    """The standard library's semantics, unchanged: the chunk fails as one."""
    with ctx.Pool(2) as p:
        out = collect(p.imap(functools.partial(h.raise_at, target=5), range(8), chunksize=4))
    assert out[:4] == [0, 1, 4, 9]
    assert isinstance(out[4], ValueError)
    assert len(out) == 5  # the chunked iterator ends at a failed chunk


# -- memory limits: Pool -------------------------------------------------------------


@linux_only
def test_pool_item_above_memory_limit_is_killed(ctx):
    limit = worker_rss(ctx) + 200 * MiB
    work = functools.partial(h.allocate_at, target=2, nbytes=400 * MiB)
    with ctx.Pool(2, memory_limit=limit) as p:
        out = collect(p.imap(work, range(8), chunksize=4))
        assert out[:2] == [0, 1] and out[3:] == [9, 16, 25, 36, 49]
        error = out[2]
        assert isinstance(error, mp.MemoryLimitError)
        assert isinstance(error, mpool.TerminatedWorkerError)
        assert error.limit == limit
        assert error.size > limit
        message = str(error)
        assert "item 2 of imap(" in message and "allocate_at" in message
        assert f"memory_limit of {limit} bytes" in message
        assert p.map(h.square, range(3)) == [0, 1, 4]


@linux_only
@pytest.mark.parametrize("then_raise", [False, True], ids=["returns", "raises"])
def test_pool_short_spike_above_memory_limit_fails_its_item(ctx, then_raise):
    # The spike ends before the pool's next read of the worker's memory: the
    # worker's own check of its peak, after the item, catches it every time.
    limit = worker_rss(ctx) + 200 * MiB
    work = functools.partial(h.spike_at, target=2, nbytes=400 * MiB, then_raise=then_raise)
    with ctx.Pool(2, memory_limit=limit) as p:
        for _ in range(3):
            out = collect(p.imap(work, range(8), chunksize=4))
            assert out[:2] == [0, 1] and out[3:] == [9, 16, 25, 36, 49]
            error = out[2]
            assert isinstance(error, mp.MemoryLimitError), error
            assert error.limit == limit and error.size > limit
            assert "item 2 of imap(" in str(error) and "spike_at" in str(error)
        spikes = [p.apply_async(h.spike_at, (2, 2, 400 * MiB)) for _ in range(4)]
        for result in spikes:
            with pytest.raises(mp.MemoryLimitError, match="spike_at"):
                result.get(60)
        assert p.map(h.square, range(3)) == [0, 1, 4]


@linux_only
def test_pool_items_below_memory_limit_are_left_alone(ctx):
    limit = worker_rss(ctx) + 200 * MiB
    work = functools.partial(h.spike_at, target=2, nbytes=50 * MiB)
    with ctx.Pool(2, memory_limit=limit) as p:
        assert p.map(work, range(8), chunksize=4) == [x * x for x in range(8)]
        pids = {p.apply(os.getpid) for _ in range(4)}
        assert pids <= {w.pid for w in p._pool}  # none was replaced


def test_peak_reader(tmp_path):
    from multiprocess.pool._limits import _peak_reader

    assert _peak_reader(proc=str(tmp_path)) is None
    peak = _peak_reader()
    if peak is None:
        pytest.skip("no /proc here")
    before = peak()
    assert before >= h.rss_of_self() > 0
    h.spike_at(0, 0, 100 * MiB)
    assert peak() >= before and peak() >= 100 * MiB


@linux_only
def test_pool_soft_memory_limit_recycles_workers(ctx):
    limit = worker_rss(ctx) + 100 * MiB
    with ctx.Pool(1, max_memory_per_child=limit) as p:
        out = p.map(functools.partial(h.leak, nbytes=150 * MiB), range(4), chunksize=1)
        assert [value for value, _pid in out] == [0, 1, 4, 9]
        # Each worker went above the limit after its task, and was replaced.
        assert len({pid for _value, pid in out}) == 4
        assert p.map(h.square, range(3)) == [0, 1, 4]


def test_memory_limit_as_string(ctx):
    with ctx.Pool(1, memory_limit="64GiB", max_memory_per_child="32GB") as p:
        assert p.map(h.square, range(5), chunksize=2) == [0, 1, 4, 9, 16]


# -- ProcessPoolExecutor ----------------------------------------------------------------


def test_executor_hung_item_in_chunked_map(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx, task_timeout=1) as ex:
        results = ex.map(h.hang_at, range(8), chunksize=4)
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(mp.TaskTimeoutError) as info:
            next(results)
        assert "item 3 of map(hang_at) (3)" in str(info.value)
        assert list(ex.map(h.square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]


def test_executor_per_call_timeouts(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx, task_timeout=3600) as ex:
        future = ex.schedule(h.hang, (1,), {"k": 2}, task_timeout=0.5)
        error = future.exception(60)
        assert isinstance(error, mp.TaskTimeoutError)
        assert error.timeout == 0.5
        assert "submit(hang)" in str(error) and "(1, k=2)" in str(error)
        results = ex.map(h.hang_at, range(6), chunksize=3, task_timeout=0.5)
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(mp.TaskTimeoutError):
            next(results)
        assert ex.schedule(h.add, (2, 3)).result(60) == 5
        assert ex.submit(h.square, 4).result(60) == 16


def test_executor_sigkill_inside_a_chunk(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        results = ex.map(functools.partial(h.die_at, target=5), range(8), chunksize=4)
        assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
        with pytest.raises(WorkerDiedError) as info:
            next(results)
        assert "item 5 of map(" in str(info.value) and "die_at" in str(info.value)
        assert ex.submit(h.square, 3).result(60) == 9


@linux_only
def test_executor_memory_limits(ctx):
    limit = worker_rss(ctx) + 200 * MiB
    with ProcessPoolExecutor(2, mp_context=ctx, memory_limit=limit) as ex:
        future = ex.submit(h.allocate_at, 2, 2, 400 * MiB)
        error = future.exception(60)
        assert isinstance(error, mp.MemoryLimitError)
        assert error.limit == limit and error.size > limit
        assert "allocate_at" in str(error)
        assert ex.submit(h.square, 3).result(60) == 9
        spike = ex.submit(h.spike_at, 2, 2, 400 * MiB)
        assert isinstance(spike.exception(60), mp.MemoryLimitError)
        assert ex.submit(h.square, 3).result(60) == 9
    soft = worker_rss(ctx) + 100 * MiB
    with ProcessPoolExecutor(1, mp_context=ctx, max_memory_per_child=soft) as ex:
        out = [ex.submit(h.leak, i, 150 * MiB).result(60) for i in range(3)]
        assert [value for value, _pid in out] == [0, 1, 4]
        assert len({pid for _value, pid in out}) == 3


# -- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwds", "error", "words"),
    [
        ({"task_timeout": -1}, ValueError, "positive number of seconds"),
        ({"task_timeout": 0}, ValueError, "positive number of seconds"),
        ({"task_timeout": "5"}, TypeError, "number of seconds"),
        ({"memory_limit": "12 parsecs"}, ValueError, '"512MiB"'),
        ({"memory_limit": -5}, ValueError, "at least 1 byte"),
        ({"max_memory_per_child": "1.5X"}, ValueError, "KiB"),
        ({"max_memory_per_child": 1.5}, TypeError, "int (bytes)"),
    ],
)
def test_bad_pool_and_executor_arguments(ctx, kwds, error, words):
    with pytest.raises(error) as info:
        ctx.Pool(1, **kwds)
    assert words in str(info.value)
    with pytest.raises(error) as info:
        ProcessPoolExecutor(1, mp_context=ctx, **kwds)
    assert words in str(info.value)


def test_bad_per_call_timeouts_raise_at_the_call(ctx):
    with ctx.Pool(1) as p:
        for call in (
            lambda: p.map(h.square, [1], task_timeout=-1),
            lambda: p.imap(h.square, [1], task_timeout=-1),
            lambda: p.apply_async(h.square, (1,), task_timeout=0),
            lambda: p.starmap(h.add, [(1, 2)], task_timeout=float("nan")),
        ):
            with pytest.raises(ValueError, match="positive number of seconds"):
                call()
        assert p.map(h.square, [1, 2]) == [1, 4]
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        with pytest.raises(ValueError, match="positive number of seconds"):
            ex.map(h.square, [1], task_timeout=-1)
        with pytest.raises(ValueError, match="positive number of seconds"):
            ex.schedule(h.square, (1,), task_timeout=-1)
        assert ex.submit(h.square, 3).result(60) == 9


def test_thread_pool_refuses_timeouts():
    with pytest.raises(ValueError, match="not supported by ThreadPool"):
        mpool.ThreadPool(1, task_timeout=1)
    with mpool.ThreadPool(1) as p:
        with pytest.raises(ValueError, match="not supported by ThreadPool"):
            p.map(h.square, [1], task_timeout=1)
        assert p.map(h.square, [1, 2], task_timeout=None) == [1, 4]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * MiB),
        ("2GB", 2 * 10**9),
        ("1.5G", 3 * 512 * MiB),
        ("800k", 800 * 1024),
        (" 10 kb ", 10_000),
        (4096, 4096),
        ("100", 100),
    ],
)
def test_size_strings(text, size):
    from multiprocess.pool._limits import _parse_size

    assert _parse_size(text, "memory_limit") == size


def test_memory_limit_without_proc_or_psutil(monkeypatch, tmp_path):
    from multiprocess.pool._limits import _rss_reader

    monkeypatch.setitem(__import__("sys").modules, "psutil", None)
    with pytest.raises(RuntimeError, match=r"multiprocess\[psutil\]"):
        _rss_reader(proc=str(tmp_path))


# -- races -------------------------------------------------------------------------------


def test_timeouts_never_fire_on_items_that_finish(ctx):
    """Many short timed items, pipelined to busy workers: the record of an item
    that ended (or of a task not started yet) must never read as a late item."""
    with ctx.Pool(2, task_timeout=30) as p:
        for chunksize in (1, 7, 500):
            assert p.map(h.square, range(20_000), chunksize) == [x * x for x in range(20_000)]
        assert sum(p.imap_unordered(h.square, range(5_000))) == sum(x * x for x in range(5_000))
    with ProcessPoolExecutor(2, mp_context=ctx, task_timeout=30) as ex:
        assert list(ex.map(h.square, range(5_000), chunksize=50)) == [x * x for x in range(5_000)]
        futures = [ex.submit(h.square, x) for x in range(2_000)]
        assert [f.result(60) for f in futures] == [x * x for x in range(2_000)]


def test_many_deaths_inside_chunks_reuse_the_record(ctx):
    """Workers die over and over on chosen items; each replacement takes the
    dead worker's slot in the record, and every other item still comes back."""
    targets = tuple(range(3, 60, 7))
    with ctx.Pool(2) as p:
        out = collect(p.imap(functools.partial(h.die_at, target=targets), range(60), chunksize=5))
        # A call answered after the last death: the coordinator has replaced
        # that worker by then (it starts replacements after failing the item).
        assert p.apply(h.square, (3,)) == 9
        assert len(p._pool) == 2
    for x, value in enumerate(out):
        if x in targets:
            assert isinstance(value, mpool.TerminatedWorkerError), (x, value)
        else:
            assert value == x * x, (x, value)


def test_executor_grown_past_its_record_still_times_out(ctx):
    """An executor grown in place (get_reusable_executor) has more workers than
    the record it started with: the added ones get slots in another array."""
    from multiprocess.futures import get_reusable_executor

    ex = get_reusable_executor(max_workers=1, mp_context=ctx)
    try:
        assert ex.submit(h.square, 2).result(60) == 4
        assert get_reusable_executor(max_workers=3, mp_context=ctx) is ex
        futures = [ex.schedule(h.hang, (i,), task_timeout=0.5) for i in range(3)]
        for future in futures:
            assert isinstance(future.exception(60), mp.TaskTimeoutError)
        results = ex.map(functools.partial(h.die_at, target=4), range(9), chunksize=3)
        assert [next(results) for _ in range(4)] == [0, 1, 4, 9]
        with pytest.raises(WorkerDiedError):
            next(results)
    finally:
        ex.kill_workers()
        ex.shutdown()


def test_executor_buffered_map_times_and_names_each_item(ctx):
    # With buffersize, each chunk goes as a map job of its own: per item
    # timeouts, isolation and notes hold as without it.
    with ProcessPoolExecutor(2, mp_context=ctx, task_timeout=1) as ex:
        results = ex.map(h.hang_at, range(8), chunksize=4, buffersize=1)
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(mp.TaskTimeoutError) as info:
            next(results)
        assert "item 3 of map(hang_at) (3)" in str(info.value)
        with pytest.raises(ValueError) as raised:
            list(ex.map(h.raise_at, range(12), [5] * 12, chunksize=4, buffersize=2))
        notes = getattr(raised.value, "__notes__", [])
        assert notes == ["in raise_at(item 5 of map: (5, 5))"], notes
        assert list(ex.map(h.square, range(5), chunksize=2, buffersize=1)) == [0, 1, 4, 9, 16]
