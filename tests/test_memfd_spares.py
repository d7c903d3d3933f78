"""Large bytes copied straight out of memfds, and spare memfds rewritten in place.

See ``_memfd`` (read_bytes, spares), ``pool._oob.decode`` (a result's memfds
become the parent's spares) and ``queues._give_back`` (a reader gives a
kind-2 memfd back to the writers).
"""

from __future__ import annotations

import gc
import os
import queue

import _memfd_spares_helpers as h
import pytest

from multiprocess import _memfd, queues
from multiprocess import pool as mpool

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not _memfd.HAVE_MEMFD, reason="memfds and SEQPACKET sockets are Linux's"),
]

MIB = 1 << 20
WAIT = 60
ODD_SIZES = [0, 1, MIB - 1, MIB, MIB + 3, 3 * MIB + 5, 9 * MIB + 1, 2 * MIB]


def _memfd_of(data):
    fd = os.memfd_create("spare-test", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


@pytest.fixture(autouse=True)
def _no_spares_left():
    _memfd.drop_spares()
    yield
    _memfd.drop_spares()


# -- _memfd ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, 9 * MIB + 7])
def test_read_bytes_and_bytearray(size):
    data = os.urandom(size)
    fd = _memfd_of(data)
    try:
        got = _memfd.read_bytes(fd, size)
        assert type(got) is bytes and got == data and hash(got) == hash(data)
        got = _memfd.read_bytearray(fd, size)
        assert type(got) is bytearray and got == data
    finally:
        os.close(fd)


def test_read_bytes_of_the_wrong_size_raises():
    fd = _memfd_of(b"x" * 100)
    try:
        with pytest.raises(EOFError, match="wrong size"):
            _memfd.read_bytes(fd, 101, EOFError)
        with pytest.raises(EOFError, match="wrong size"):
            _memfd.read_bytearray(fd, 99, EOFError)
    finally:
        os.close(fd)


def test_copy_to_memfd_rewrites_a_spare_of_any_size():
    fd = _memfd_of(b"a" * (3 * MIB))
    _memfd.keep_spare(fd, 3 * MIB)
    small = os.urandom(MIB + 1)  # shrinks it
    assert _memfd.copy_to_memfd(memoryview(small)) == fd
    assert not _memfd._spares
    assert _memfd.read_bytes(fd, len(small)) == small
    _memfd.keep_spare(fd, len(small))
    large = os.urandom(5 * MIB + 3)  # grows it
    assert _memfd.copy_to_memfd(memoryview(large)) == fd
    assert _memfd.read_bytes(fd, len(large)) == large
    _memfd.keep_spare(fd, len(large))
    assert _memfd.copy_to_memfd(memoryview(b"")) == fd  # and to nothing
    assert os.fstat(fd).st_size == 0
    os.close(fd)


def test_the_best_fitting_spare_is_taken():
    fds = {size: _memfd_of(b"s" * size) for size in (MIB, 4 * MIB, 2 * MIB)}
    for size, fd in fds.items():
        _memfd.keep_spare(fd, size)
    assert _memfd.copy_to_memfd(memoryview(b"t" * (MIB + 1))) == fds[2 * MIB]
    assert _memfd.copy_to_memfd(memoryview(b"t" * (8 * MIB))) == fds[4 * MIB]  # the largest
    assert _memfd.copy_to_memfd(memoryview(b"t" * 10)) == fds[MIB]
    assert not _memfd._spares
    for fd in fds.values():
        os.close(fd)


def test_spares_are_bounded(monkeypatch):
    monkeypatch.setattr(_memfd, "MAX_SPARE_BYTES", 3 * MIB)
    kept, extra = _memfd_of(b"k" * (2 * MIB)), _memfd_of(b"e" * (2 * MIB))
    _memfd.keep_spare(kept, 2 * MIB)
    _memfd.keep_spare(extra, 2 * MIB)  # above the bound: closed
    with pytest.raises(OSError):
        os.fstat(extra)
    assert _memfd._spares == [(2 * MIB, kept)]
    _memfd.drop_spares()
    with pytest.raises(OSError):
        os.fstat(kept)
    assert _memfd._spare_bytes == 0


def test_a_child_holds_none_of_its_parents_spares(ctx):
    # A forked child closes them at once: it must never write into them.
    _memfd.keep_spare(_memfd_of(b"p" * MIB), MIB)
    out = ctx.SimpleQueue()
    p = ctx.Process(target=h.report_spares, args=(out,))
    p.start()
    assert out.get() == (0, 0)
    p.join(WAIT)
    assert p.exitcode == 0
    assert len(_memfd._spares) == 1  # the parent's own are untouched


# -- pool: a result's memfds carry the next tasks ---------------------------------


def test_pool_results_become_spares_for_the_next_tasks(ctx):
    payloads = [os.urandom(n) for n in ODD_SIZES]
    with ctx.Pool(2) as p:
        assert p.map(h.echo, payloads, chunksize=1) == payloads
        assert _memfd._spares  # the results' memfds, kept
        again = [os.urandom(n) for n in reversed(ODD_SIZES)]  # other sizes for each
        back = p.map(h.echo, again, chunksize=1)
        assert back == again and all(type(b) is bytes for b in back)
        assert p.apply(h.echo, ((again[1], again[2]),)) == (again[1], again[2])
        p.close()
        p.join()
    assert not _memfd._spares  # dropped with the pool
    gc.collect()
    assert h.memfds_named("multiprocess-pool") == 0


def test_pool_worker_killed_with_a_task_in_a_spare(ctx):
    # Tasks written into spares (this process's own memfds): a worker killed
    # with one in hand, before it read it; the pool goes on, nothing leaks.
    data = os.urandom(3 * MIB + 1)
    for _ in range(3):
        _memfd.keep_spare(_memfd_of(b"old" * MIB), 3 * MIB)
    with ctx.Pool(2) as p:
        with pytest.raises(mpool.TerminatedWorkerError):
            p.apply(h.die, (data,))
        assert len(_memfd._spares) < 3  # the task took one (and its worker another)
        assert p.map(h.echo, [data, data[1:]], chunksize=1) == [data, data[1:]]
        p.close()
        p.join()
    gc.collect()
    assert h.memfds_named("spare-test") == 0
    assert h.memfds_named("multiprocess-pool") == 0


def test_pool_gives_workers_spares_for_their_results(ctx):
    # A worker cannot recycle a task's memfds (the pool may send them again):
    # the pool gives it one of its spares with a task, for the result.
    data = os.urandom(2 * MIB + 3)
    with ctx.Pool(1) as p:
        assert p.apply(h.spares_here, (b"",)) == 0
        for _ in range(3):
            _memfd.keep_spare(_memfd_of(b"old" * MIB), 3 * MIB)
        assert p.apply(h.spares_here, (data,)) == 1  # with the task's memfd, a spare
        assert p.map(h.echo, [data, data[5:], data[:-5]], chunksize=1) == [
            data,
            data[5:],
            data[:-5],
        ]
        with pytest.raises(mpool.TerminatedWorkerError):
            p.apply(h.die, (data,))  # with its spares
        assert p.apply(h.echo, (data,)) == data
        p.close()
        p.join()
    gc.collect()
    assert h.memfds_named("spare-test") == 0
    assert h.memfds_named("multiprocess-pool") == 0


def test_pool_task_memfds_become_spares_when_done(ctx):
    data = os.urandom(3 * MIB + 1)
    with ctx.Pool(1) as p:
        assert p.apply(h.length, (data,)) == len(data)  # the result is small
        assert p.apply(h.length, (b"x",)) == 1  # the first task is all done now
        assert _memfd._spares  # its memfd
        p.close()
        p.join()


# -- queue: readers give kind-2 memfds back to the writers ------------------------


def _sizes():
    low = queues._FD_MIN_SIZE
    return [0, low - 1, low, low + 3, 3 * MIB + 1, low]


def test_queue_large_bytes_memfds_go_back_to_the_writers(ctx):
    items = [os.urandom(n) for n in _sizes()]
    q = ctx.Queue()
    p = ctx.Process(target=h.put_all, args=(q, items), daemon=True)
    p.start()
    got = [q.get(timeout=WAIT) for _ in items]
    assert got == items and all(type(b) is bytes for b in got)
    p.join(WAIT)
    assert p.exitcode == 0
    # The last one's memfd waits for a writer; this process's feeder takes it.
    assert queues._readable(q._side_writer.fileno(), 0)
    more = os.urandom(2 * MIB + 7)
    q.put(more)
    assert q.get(timeout=WAIT) == more
    q.close()
    q.join_thread()


def test_queue_reader_killed_before_copying_out(ctx):
    big = os.urandom(2 * MIB + 1)
    q = ctx.Queue()
    reached = ctx.Event()
    before = h.memfds_named("multiprocess-queue")
    reader = ctx.Process(target=h.get_and_die_before_copying, args=(q, reached), daemon=True)
    reader.start()
    q.put(big)
    assert reached.wait(WAIT)  # the reader holds the memfd, not copied out
    reader.kill()
    reader.join(WAIT)
    q.put(big[1:])
    assert q.get(timeout=WAIT) == big[1:]
    q.close()
    q.join_thread()
    gc.collect()
    assert h.memfds_named("multiprocess-queue") == before


def test_queue_writer_killed_with_a_given_back_memfd(ctx):
    big = os.urandom(2 * MIB + 1)
    q = ctx.Queue()
    q.put(big)
    assert q.get(timeout=WAIT) == big  # its memfd waits for a writer now
    reached = ctx.Event()
    writer = ctx.Process(
        target=h.put_bytes_and_die_before_memfds, args=(q, big[2:], reached), daemon=True
    )
    writer.start()
    assert reached.wait(WAIT)  # the record is in the pipe, its memfd not sent
    writer.kill()
    writer.join(WAIT)
    assert not queues._readable(q._side_writer.fileno(), 0)  # the writer had taken it
    with pytest.raises(queue.Empty):
        q.get(timeout=1.0)
    q.put(big[3:])
    assert q.get(timeout=WAIT) == big[3:]
    q.close()
    q.join_thread()


def test_only_the_process_that_packed_a_task_recycles_its_memfds():
    from multiprocess.pool import _oob

    mine = _oob.Memfd(_memfd_of(b"m" * MIB), MIB)
    mine.recycle = os.getpid()
    inherited = _oob.Memfd(_memfd_of(b"i" * MIB), MIB)
    inherited.recycle = os.getpid() + 1  # as in a child forked with it: closed
    fd = inherited.fd
    mine.close()
    inherited.close()
    assert len(_memfd._spares) == 1
    with pytest.raises(OSError):
        os.fstat(fd)
