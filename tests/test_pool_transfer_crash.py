"""A worker killed half-way through a large transfer: the pool goes on, under every start method.

Each row stops a worker in the middle of a frame larger than any pipe
buffer (see ``_pool_transfer_helpers``): while it reads a large argument (the
coordinator has more of it to write) or while it writes a large result (the
coordinator has read part of it).  Meanwhile the other worker must keep
serving; then the worker is killed (its task fails with
TerminatedWorkerError, a replacement starts, large transfers work again,
close() and join() return) or the pool is terminated (terminate() returns,
the task fails with PoolTerminatedError).
"""

from __future__ import annotations

import os
import signal

import _pool_helpers as h
import _pool_transfer_helpers as th
import pytest

from multiprocess import pool as mpool
from multiprocess.pool import _oob

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _through_the_pipes(monkeypatch):
    """Large frames through the pipes, as off Linux: on Linux they would go in
    memfds (see pool/_oob; test_pool_oob kills a worker in that path)."""
    monkeypatch.setattr(_oob, "ENABLED", False)


WAIT = 60


DIRECTIONS = {"argument": th.init_stall_reading, "result": th.init_stall_writing}


def _start(p, direction):
    if direction == "argument":
        return p.apply_async(len, (b"a" * th.BIG,)), th.BIG
    return p.apply_async(th.big_result, (th.BIG,)), b"r" * th.BIG


@pytest.mark.parametrize("end", ["killed", "terminated"])
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_worker_stopped_mid_transfer(ctx, direction, end):
    event = ctx.Event()
    pid = ctx.Value("i", 0)
    p = ctx.Pool(2, initializer=DIRECTIONS[direction], initargs=(event, pid))
    try:
        result, expected = _start(p, direction)
        assert event.wait(WAIT), "the worker never reached the middle of the transfer"
        victim = pid.value
        assert victim in {w.pid for w in p._pool}
        # The coordinator is not stuck on the stalled worker: the other one serves.
        assert p.map(h.square, range(20)) == [x * x for x in range(20)]
        assert not result.ready()

        if end == "terminated":
            p.terminate()
            with pytest.raises(mpool.PoolTerminatedError):
                result.get(WAIT)
            p.join()
            assert p._pool == []
            return

        os.kill(victim, signal.SIGKILL)
        with pytest.raises(mpool.TerminatedWorkerError) as info:
            result.get(WAIT)
        assert info.value.pid == victim
        assert info.value.exitcode == -signal.SIGKILL
        # Replaced, and large transfers work again, both ways.
        assert p.map(h.square, range(20)) == [x * x for x in range(20)]
        assert len(p._pool) == 2 and victim not in {w.pid for w in p._pool}
        again, expected = _start(p, direction)
        assert again.get(WAIT) == expected
        assert p.apply_async(len, (b"b" * th.BIG,)).get(WAIT) == th.BIG
        p.close()
        p.join()
        assert p._pool == []
    finally:
        p.terminate()


def test_large_transfers_both_ways_do_not_block_small_ones(ctx):
    # One worker busy with large frames in and out, the other with small tasks.
    with ctx.Pool(2) as p:
        large = [p.apply_async(th.big_result, (th.BIG,)) for _ in range(2)]
        sizes = p.map_async(len, [b"c" * th.BIG] * 2, chunksize=1)
        assert p.map(h.square, range(200)) == [x * x for x in range(200)]
        assert all(r.get(WAIT) == b"r" * th.BIG for r in large)
        assert sizes.get(WAIT) == [th.BIG, th.BIG]
