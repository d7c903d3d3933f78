"""A Queue survives a consumer killed in the middle of a get(): the record it
was reading is lost with it, and the other consumers get every item after it,
in order, under every start method.
"""

from __future__ import annotations

import random
import signal
import sys

import _queue_reader_helpers as h
import pytest
from _sync_helpers import echo_until_none

from multiprocess import queues

pytestmark = pytest.mark.timeout(180)

HAVE_QSIZE = sys.platform != "darwin"  # needs sem_getvalue()
PIPE_ITEM = b"p" * (512 << 10)  # through the pipe, in several reads
MEMFD_ITEM = b"m" * (2 << 20)  # in a memfd where there are memfds

CASES = {
    # name: (the item being read when its consumer dies, where it stops)
    "small-after-header": (("small", 1), "after-header"),
    "pipe-after-header": (PIPE_ITEM, "after-header"),
    "pipe-mid-payload": (PIPE_ITEM, "mid-payload"),
    "oob-mid-buffer": (bytearray(PIPE_ITEM), "mid-payload"),
    "memfd-after-header": (MEMFD_ITEM, "after-header"),
    "memfd-before-message": (MEMFD_ITEM, "before-message"),
    "memfd-before-map": (MEMFD_ITEM, "before-map"),
}
FOLLOWERS = [("after", 0), PIPE_ITEM + b"1", ("after", 2), MEMFD_ITEM + b"3", bytearray(PIPE_ITEM)]


def kill_while_reading(ctx, q, victim_item, where):
    """A consumer takes ``victim_item`` from ``q`` and is killed at ``where``."""
    reached = ctx.Event()
    victim = ctx.Process(target=h.get_and_stop, args=(q, reached, where), daemon=True)
    victim.start()
    q.put(victim_item)
    assert reached.wait(60), f"the consumer never reached {where}"
    victim.kill()
    victim.join(60)
    assert victim.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("case", list(CASES))
def test_consumer_killed_in_the_middle_of_a_get(ctx, case):
    victim_item, where = CASES[case]
    if where in ("before-message", "before-map") and not queues._HAVE_MEMFD:
        pytest.skip("memfds and SEQPACKET sockets are Linux only")
    q = ctx.Queue()
    kill_while_reading(ctx, q, victim_item, where)
    for obj in FOLLOWERS:
        q.put(obj)
    # The next get() takes the read lock back and skips the rest of the record.
    assert [q.get(timeout=60) for _ in FOLLOWERS] == FOLLOWERS
    if HAVE_QSIZE:
        assert q.qsize() == 0  # the lost item's slot was given back
    assert not q._read_lock._shared[queues._RDIRTY]  # the skip is done
    q.put("mine")
    assert q.get(timeout=60) == "mine"
    q.close()
    q.join_thread()


def test_consumer_killed_while_another_consumer_waits(ctx):
    # The survivor is a process already waiting for the read lock when the
    # holder dies; the items after the lost one reach it in order.
    q, out = ctx.Queue(), ctx.Queue()
    kill_while_reading(ctx, q, PIPE_ITEM, "mid-payload")
    survivor = ctx.Process(target=echo_until_none, args=(q, out), daemon=True)
    survivor.start()
    for obj in [*FOLLOWERS, None]:
        q.put(obj)
    assert [out.get(timeout=60) for _ in FOLLOWERS] == FOLLOWERS
    survivor.join(60)
    assert survivor.exitcode == 0
    if HAVE_QSIZE:
        assert q.qsize() == 0
    for x in (q, out):
        x.close()
        x.join_thread()


def test_joinable_queue_counts_the_lost_item_as_done(ctx):
    q = ctx.JoinableQueue()
    kill_while_reading(ctx, q, PIPE_ITEM, "mid-payload")
    q.put("next")
    assert q.get(timeout=60) == "next"
    q.task_done()
    q.join()  # would hang if the lost item stayed unfinished
    q.close()
    q.join_thread()


def test_bounded_queue_gets_the_lost_slot_back(ctx):
    q = ctx.Queue(maxsize=2)
    kill_while_reading(ctx, q, ("small", 1), "after-header")
    q.put(1, timeout=60)
    with pytest.raises(queues.Full):
        q.put_nowait(2)  # the lost item holds its slot until a reader skips it
    assert q.get(timeout=60) == 1
    q.put(2, timeout=60)
    q.put(3, timeout=60)  # two free slots again
    assert [q.get(timeout=60), q.get(timeout=60)] == [2, 3]
    q.close()
    q.join_thread()


def _counters(ctx, n):
    return ctx.Array("i", n, lock=False), ctx.Array("i", 1, lock=False)


def test_consumers_killed_at_random_points(ctx):
    """Consumers are killed at random instants while others read: every item
    arrives intact at most once, at most one per killed consumer is lost, and
    nothing hangs."""
    rng = random.Random(0x51)
    count, kills, readers = 800, 20, 3
    q = ctx.Queue()
    seen, errors = _counters(ctx, count)

    def start():
        p = ctx.Process(target=h.consume, args=(q, seen, errors), daemon=True)
        p.start()
        return p

    live = [start() for _ in range(readers)]
    for i in range(count):
        q.put(h.item(i))
    killed = 0
    while killed < kills:
        # Wait until a few more items are in, then a random while more.
        target = min(sum(seen) + rng.randrange(1, 8), count - readers * 10)
        while sum(seen) < target:
            pass
        for _ in range(rng.randrange(50_000)):
            pass
        victim = live.pop(rng.randrange(len(live)))
        victim.kill()
        victim.join(60)
        killed += 1
        live.append(start())
    for _ in live:
        q.put(None)
    for p in live:
        p.join(120)
        assert p.exitcode == 0, "a consumer failed (see its traceback above)"
    assert errors[0] == 0, "damaged items arrived"
    counts = list(seen)
    assert max(counts) == 1, [i for i, c in enumerate(counts) if c > 1]
    lost = [i for i, c in enumerate(counts) if c == 0]
    assert len(lost) <= kills, lost
    if HAVE_QSIZE:
        # A consumer killed in the instant between a record's end and giving
        # back its slot leaves the slot taken: qsize() one too high at most.
        assert 0 <= q.qsize() <= kills
    q.put("still works")
    assert q.get(timeout=60) == "still works"
    q.close()
    q.join_thread()


@pytest.mark.parametrize("holder", ["hold_read_lock_without_pid", "hold_guard_and_read_lock"])
def test_locks_of_a_consumer_killed_at_the_wrong_instant_are_taken_back(ctx, holder):
    # A read lock whose holder died before recording its pid, and the guard of
    # a consumer killed while it took a lock back, are taken back after
    # _ANONYMOUS_AFTER seconds.
    q = ctx.Queue()
    holding = ctx.Event()
    p = ctx.Process(target=getattr(h, holder), args=(q, holding), daemon=True)
    p.start()
    assert holding.wait(60)
    p.kill()
    p.join(60)
    q.put("after")
    assert q.get(timeout=60) == "after"
    q.put("again")
    assert q.get(timeout=60) == "again"
    q.close()
    q.join_thread()


def test_an_error_in_the_middle_of_a_get_leaves_the_queue_readable(ctx, monkeypatch):
    q = ctx.Queue()
    for obj in (PIPE_ITEM, "next"):
        q.put(obj)

    def no_memory(size):
        raise MemoryError(size)

    monkeypatch.setattr(queues, "_allocate", no_memory)
    with pytest.raises(MemoryError):
        q.get(timeout=60)  # the header was read, the payload not
    monkeypatch.undo()
    assert q.get(timeout=60) == "next"
    if HAVE_QSIZE:
        assert q.qsize() == 0
    q.close()
    q.join_thread()
