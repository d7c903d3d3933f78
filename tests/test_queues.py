"""Queue, JoinableQueue and SimpleQueue across processes, under every start method."""

from __future__ import annotations

import os
import pickle
import queue
import sys
import time

import _sync_helpers as h
import pytest
from _fd_helpers import fd_count, fd_targets

from multiprocess import _memfd, queues

HAVE_QSIZE = sys.platform != "darwin"  # needs sem_getvalue()


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join_all(procs, expect=0):
    for p in procs:
        p.join(60)
        assert p.exitcode == expect


def close(q):
    q.close()
    q.join_thread()


def test_public_names():
    assert queues.__all__ == sorted(["Queue", "SimpleQueue", "JoinableQueue"])
    assert queues.Empty is queue.Empty and queues.Full is queue.Full


# -- Queue ---------------------------------------------------------------------


def test_put_get_across_processes(ctx):
    q = ctx.Queue()
    items = [1, "two", (3.0, None), {"four": [4]}, b"x" * 100_000, list(range(50_000))]
    p = start(ctx, h.put_all, q, items)
    assert [q.get(timeout=60) for _ in items] == items
    join_all([p])
    close(q)


def test_lambdas_and_closures_from_child(ctx):
    q = ctx.Queue()
    p = start(ctx, h.put_functions, q)
    double = q.get(timeout=60)
    add10 = q.get(timeout=60)
    adders = q.get(timeout=60)
    assert double(21) == 42
    assert add10(5) == 15
    assert [f(1) for f in adders] == [1, 2, 3]
    join_all([p])
    close(q)


def test_lambdas_and_closures_to_child(ctx):
    inq, outq = ctx.Queue(), ctx.Queue()
    p = start(ctx, h.apply_functions, inq, outq, 3)
    offset = 7
    inq.put((lambda x: x + offset, 1))
    inq.put((h.make_adder(100), 1))
    inq.put((sorted, [3, 1, 2]))
    assert [outq.get(timeout=60) for _ in range(3)] == [8, 101, [1, 2, 3]]
    join_all([p])
    close(inq)
    close(outq)


def test_many_producers_and_consumers(ctx):
    q, out = ctx.Queue(), ctx.Queue()
    producers = [start(ctx, h.put_all, q, range(i * 100, i * 100 + 100)) for i in range(3)]
    consumers = [start(ctx, h.echo_until_none, q, out) for _ in range(2)]
    got = sorted(out.get(timeout=60) for _ in range(300))
    assert got == list(range(300))
    join_all(producers)
    for _ in consumers:
        q.put(None)
    join_all(consumers)
    close(q)
    close(out)


def test_inherited_while_feeder_runs(ctx):
    # The child gets its own feeder thread, not a copy of ours.
    q = ctx.Queue()
    for i in range(10):
        q.put(i)
    p = start(ctx, h.put_all, q, range(10, 20))
    assert sorted(q.get(timeout=60) for _ in range(20)) == list(range(20))
    with pytest.raises(queue.Empty):
        q.get(False)
    join_all([p])
    close(q)


def test_maxsize_full_and_timeouts(ctx):
    q = ctx.Queue(maxsize=2)
    assert q.empty() and not q.full()
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put(3, False)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, True, 0.1)
    assert time.monotonic() - t0 >= 0.09
    with pytest.raises(queue.Full):
        q.put(3, timeout=-1)  # negative: do not wait
    assert q.get(timeout=60) == 1
    q.put(3)
    assert [q.get(timeout=60), q.get(timeout=60)] == [2, 3]
    assert q.empty()
    close(q)


def test_get_timeouts_and_bad_timeouts(ctx):
    q = ctx.Queue()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False, 10)  # non-blocking ignores the timeout
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    with pytest.raises(queue.Empty):
        q.get(timeout=-1)
    with pytest.raises(TypeError):
        q.get(timeout="1")
    with pytest.raises(TypeError):
        q.put(1, timeout="1")
    close(q)


@pytest.mark.skipif(not HAVE_QSIZE, reason="qsize() needs sem_getvalue()")
def test_qsize(ctx):
    q = ctx.Queue()
    assert q.qsize() == 0
    q.put(1)
    q.put(2)
    assert q.qsize() == 2
    q.get(timeout=60)
    assert q.qsize() == 1
    q.get(timeout=60)
    assert q.qsize() == 0
    close(q)


def test_closed_queue(ctx):
    for q in (ctx.Queue(), ctx.JoinableQueue()):
        q.put("flushed")
        q.close()
        with pytest.raises(ValueError, match="is closed"):
            q.put("foo")
        with pytest.raises(ValueError, match="is closed"):
            q.get()
        with pytest.raises(ValueError, match="is closed"):
            q.put_nowait("foo")
        q.close()  # again: no-op
        q.join_thread()


def test_closed_unused_queue_still_answers_empty(ctx):
    # As in CPython 3.13 (its test_closed_queue_empty_exceptions): close() on a
    # queue nothing was put to leaves the pipe alone, so empty() answers; once
    # used, close() and join_thread() close it and empty() raises OSError.
    for q in (ctx.Queue(), ctx.JoinableQueue()):
        q.close()
        q.join_thread()
        assert q.empty()
        with pytest.raises(ValueError, match="is closed"):
            q.put("foo")
    for q in (ctx.Queue(), ctx.JoinableQueue()):
        q.put("foo")
        q.close()
        q.join_thread()
        with pytest.raises(OSError, match="is closed"):
            q.empty()


def test_join_thread_needs_close(ctx):
    q = ctx.Queue()
    with pytest.raises(ValueError, match="not closed"):
        q.join_thread()
    q.cancel_join_thread()
    close(q)


def test_unserializable_object_is_reported_and_skipped(ctx):
    errors = []

    class ReportingQueue(queues.Queue):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            errors.append((e, obj))

    class Unpicklable:
        def __reduce__(self):
            raise AttributeError("no way")

    q = ReportingQueue(maxsize=1, ctx=ctx)
    bad = Unpicklable()
    q.put(bad)
    q.put("after")  # the failed object gave its slot back
    assert q.get(timeout=60) == "after"
    assert len(errors) == 1
    assert isinstance(errors[0][0], AttributeError) and errors[0][1] is bad
    close(q)


def test_default_feeder_error_prints_traceback(ctx, capsys):
    q = ctx.Queue()
    q.put(h.Unpicklable())
    q.put("ok")
    assert q.get(timeout=60) == "ok"
    close(q)
    assert "Traceback" in capsys.readouterr().err


def test_pickling_outside_spawning_is_refused(ctx):
    for q in (ctx.Queue(), ctx.JoinableQueue(), ctx.SimpleQueue()):
        with pytest.raises(RuntimeError, match="through inheritance"):
            pickle.dumps(q)


def test_ignore_epipe_attribute(ctx):
    q = ctx.Queue()
    assert q._ignore_epipe is False
    close(q)


# -- killed processes ----------------------------------------------------------


def test_producer_killed_mid_put(ctx):
    q = ctx.Queue()
    done = ctx.Event()
    # 4 MB cannot fit in the pipe: once data shows up, the producer's feeder
    # is stuck in the middle of the record, holding the write lock.  (With
    # memfds a large record is never partial: see the memfd tests.)
    p = start(ctx, h.put_and_report_without_memfds, q, b"x" * 4_000_000, done)
    assert done.wait(60)
    assert q._reader.poll(60)
    p.kill()
    p.join(60)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.5)
    assert time.monotonic() - t0 < 5
    # Another producer takes the lock back and its objects arrive intact.
    p2 = start(ctx, h.put_all, q, ["after", b"y" * 100_000])
    assert q.get(timeout=60) == "after"
    assert q.get(timeout=60) == b"y" * 100_000
    join_all([p2])
    q.put("mine")
    assert q.get(timeout=60) == "mine"
    if HAVE_QSIZE:
        assert q.qsize() == 0  # the lost record's slot was given back
    close(q)


def test_producer_killed_then_another_writes_before_anyone_reads(ctx):
    q = ctx.Queue()
    done = ctx.Event()
    p = start(ctx, h.put_and_report_without_memfds, q, b"x" * 4_000_000, done)
    assert done.wait(60)
    assert q._reader.poll(60)
    p.kill()
    p.join(60)
    p2 = start(ctx, h.put_all, q, ["next"])
    assert q.get(timeout=60) == "next"
    join_all([p2])
    close(q)


def test_consumer_killed_while_waiting(ctx):
    q = ctx.Queue()
    started = ctx.Event()
    stuck = start(ctx, h.get_forever, q, started)
    assert started.wait(60)
    results = ctx.Queue()
    other = start(ctx, h.get_one, q, results)
    stuck.kill()
    stuck.join(60)
    q.put("for the survivor")
    assert results.get(timeout=60) == "for the survivor"
    join_all([other])
    close(q)
    close(results)


# -- JoinableQueue -------------------------------------------------------------


def test_joinable_queue(ctx):
    q, results = ctx.JoinableQueue(), ctx.Queue()
    workers = [start(ctx, h.joinable_worker, q, results) for _ in range(3)]
    for i in range(20):
        q.put(i)
    q.join()
    assert sorted(results.get(timeout=60) for _ in range(20)) == [i * i for i in range(20)]
    for _ in workers:
        q.put(None)
    q.join()
    join_all(workers)
    close(q)
    close(results)


def test_task_done_too_many_times(ctx):
    q = ctx.JoinableQueue()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put(1)
    assert q.get(timeout=60) == 1
    q.task_done()
    q.join()
    with pytest.raises(ValueError, match="called too many times"):
        q.task_done()
    close(q)


def test_joinable_unserializable_counts_as_done(ctx):
    class Quiet(queues.JoinableQueue):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            pass

    q = Quiet(ctx=ctx)
    q.put(h.Unpicklable())
    q.join()  # would hang if the lost object stayed unfinished
    close(q)


# -- SimpleQueue ---------------------------------------------------------------


def test_simple_queue(ctx):
    q = ctx.SimpleQueue()
    assert q.empty()
    p = start(ctx, h.simple_put, q, [1, lambda: "lambda", h.make_adder(3)])
    assert q.get() == 1
    assert q.get()() == "lambda"
    assert q.get()(1) == 4
    join_all([p])
    assert q.empty()
    back = ctx.SimpleQueue()
    p = start(ctx, h.simple_echo, q, back)
    q.put({"a": 1})
    assert back.get() == {"a": 1}
    join_all([p])
    q.close()
    q.close()
    assert q._reader.closed and q._writer.closed
    assert hasattr(q, "_rlock") and hasattr(q, "_wlock")


def test_simple_queue_consumer_killed_while_waiting(ctx):
    q = ctx.SimpleQueue()
    started = ctx.Event()
    stuck = start(ctx, h.simple_get_forever, q, started)
    assert started.wait(60)
    results = ctx.Queue()
    other = start(ctx, h.simple_get_one, q, results)
    stuck.kill()
    stuck.join(60)
    q.put("for the survivor")
    assert results.get(timeout=60) == "for the survivor"
    join_all([other])
    q.close()
    close(results)


def test_simple_queue_reader_speaks_connection_messages(ctx):
    # concurrent.futures reads SimpleQueue._reader with Connection.recv().
    q = ctx.SimpleQueue()
    q.put(("x", 1))
    assert q._reader.recv() == ("x", 1)
    q.close()


def test_generic_alias():
    assert queues.Queue[int].__origin__ is queues.Queue
    assert queues.SimpleQueue[int].__origin__ is queues.SimpleQueue


# -- out-of-band buffers (record kind 1) ----------------------------------------


def test_large_buffers_round_trip(ctx):
    np = pytest.importorskip("numpy")
    small = np.arange(10, dtype=np.int16)
    medium = np.arange(100_000, dtype=np.float64).reshape(1000, 100)
    big = np.arange(3_000_000, dtype=np.int32).reshape(3, -1)
    raw = bytearray(range(256)) * 5000
    mixed = {
        "a": np.ones((512, 512), dtype=np.complex64),
        "b": big[::-1].copy(),
        "f": lambda x: x + 1,
    }
    inq, outq = ctx.Queue(), ctx.Queue()
    p = start(ctx, h.echo_until_none, inq, outq)
    # Wrapped in tuples: the echo loop compares each item with None.
    for obj in (small, medium, big, raw, mixed):
        inq.put((obj,))
    inq.put(None)
    for arr in (small, medium, big):
        (got,) = outq.get(timeout=60)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert np.array_equal(got, arr)
    (got,) = outq.get(timeout=60)
    assert type(got) is bytearray and got == raw
    (got,) = outq.get(timeout=60)
    for key in ("a", "b"):
        assert got[key].dtype == mixed[key].dtype and got[key].shape == mixed[key].shape
        assert np.array_equal(got[key], mixed[key])
    assert got["f"](41) == 42
    join_all([p])
    close(inq)
    close(outq)


def _next_record(q):
    """The next record's kind, flags and payload (consumes it, not its memfds' message)."""
    assert q._reader.poll(60)
    reader = queues._RecordReader(q._reader, q._write_lock, lambda: None, None, q._stream)
    header = bytearray(queues._HEADER_SIZE)
    assert reader._read_into(memoryview(header))
    _magic, kind, flags, size = queues._HEADER.unpack(header)
    body = bytearray(size)
    assert reader._read_into(memoryview(body))
    assert os.get_blocking(q._reader.fileno()) is False
    return kind, flags, body


def _next_record_raw(q):
    """The next record's kind and, for kind 1, its buffer length words (consumes it)."""
    kind, flags, body = _next_record(q)
    if kind != queues._KIND_OOB:
        return kind, []
    count, _ = queues._OOB_TABLE.unpack_from(body)
    start = queues._OOB_TABLE.size
    if flags & queues._FLAG_FDS:
        start += queues._TOKEN.size  # its memfds' message stays on the side channel
    words = [n for (n,) in queues._OOB_LEN.iter_unpack(body[start : start + 8 * count])]
    return kind, words


def test_records_and_their_kinds(ctx):
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    size = queues._OOB_MIN_SIZE
    q.put(bytearray(size))
    q.put(np.zeros(size // 8))
    q.put(b"small")
    q.put(bytearray(size - 1))  # too small to go out of band
    assert _next_record_raw(q) == (queues._KIND_OOB, [size])
    # A numpy array's buffer may be read into a memory map.
    assert _next_record_raw(q) == (queues._KIND_OOB, [size | queues._OOB_MAPPABLE])
    assert _next_record_raw(q)[0] == queues._KIND_PICKLE
    assert _next_record_raw(q)[0] == queues._KIND_PICKLE
    close(q)


# -- large arrays through memfds (Linux) --------------------------------------

needs_memfd = pytest.mark.skipif(
    not queues._HAVE_MEMFD, reason="memfds and SEQPACKET sockets are Linux only"
)


def _fd_targets():
    return [target for _fd, target in fd_targets()]


@needs_memfd
def test_large_arrays_travel_in_memfds(ctx):
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    big = queues._FD_MIN_SIZE
    arrays = [np.arange(big // 8, dtype=np.float64), np.full(big // 8 - 1, 7.0)]
    p = start(ctx, h.put_all, q, [arrays[0], (arrays[0], arrays[1]), arrays[0]])
    # The buffer goes in a memfd; one byte short of the threshold, in the pipe.
    assert _next_record_raw(q) == (
        queues._KIND_OOB,
        [big | queues._OOB_MAPPABLE | queues._OOB_IN_FD],
    )
    # The next get() drops the message the raw read left on the side channel.
    got_a, got_b = q.get(timeout=60)
    assert np.array_equal(got_a, arrays[0]) and np.array_equal(got_b, arrays[1])
    got = q.get(timeout=60)
    assert np.array_equal(got, arrays[0])
    got[0] = -1.0  # mapped shared memory that nobody else holds: writable
    assert got.flags.writeable and got[0] == -1.0
    join_all([p])
    close(q)


@needs_memfd
def test_large_bytes_and_pickles_travel_in_memfds(ctx):
    q = ctx.Queue()
    big = queues._FD_MIN_SIZE
    blob = bytes(range(256)) * (big // 256)
    nested = {"blob": blob, "n": 1}
    p = start(ctx, h.put_all, q, [blob, nested, blob[: big - 64], blob, nested])
    kinds = [_next_record(q)[:2] for _ in range(3)]
    assert kinds == [
        (queues._KIND_BYTES, queues._FLAG_FDS),  # as it is, not pickled
        (queues._KIND_PICKLE, queues._FLAG_FDS),  # a large pickle
        (queues._KIND_PICKLE, 0),  # below the threshold: the pipe
    ]
    got = q.get(timeout=60)
    assert type(got) is bytes and got == blob
    assert q.get(timeout=60) == nested
    assert not queues._readable(q._side_reader.fileno(), 0)
    join_all([p])
    close(q)


@needs_memfd
def test_memfd_maps_do_not_leak_descriptors(ctx, monkeypatch):
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    arr = np.arange(queues._FD_MIN_SIZE // 8, dtype=np.float64)
    # Before Python 3.13 a map keeps a descriptor: past the budget, copy out.
    monkeypatch.setattr(_memfd, "_MAP_TRACKFD_ARG", False)
    monkeypatch.setattr(_memfd, "_MAX_LIVE_MAPS", _memfd._live_maps + 2)
    p = start(ctx, h.put_all, q, [arr] * 6)
    first = q.get(timeout=60)  # the side channel is in use from here on
    before = fd_count()
    kept = [q.get(timeout=60) for _ in range(5)]
    assert all(np.array_equal(a, arr) for a in [first, *kept])
    assert fd_count() <= before + 2
    del first, kept
    assert fd_count() <= before - 1
    join_all([p])
    close(q)


def _array_then_string_arrive(ctx, q):
    """A child puts an array that goes in a memfd, then a string: both arrive intact."""
    import numpy as np

    arr = np.arange(queues._FD_MIN_SIZE // 8, dtype=np.float64)
    p = start(ctx, h.put_all, q, [arr, "after"])
    assert np.array_equal(q.get(timeout=60), arr)
    assert q.get(timeout=60) == "after"
    join_all([p])


@needs_memfd
def test_writer_killed_before_sending_memfds(ctx):
    pytest.importorskip("numpy")
    q = ctx.Queue()
    reached = ctx.Event()
    p = start(ctx, h.put_array_and_die_before_memfds, q, queues._FD_MIN_SIZE, reached)
    assert reached.wait(60)  # the record is in the pipe, the memfd not sent
    p.kill()
    p.join(60)
    with pytest.raises(queue.Empty):
        q.get(timeout=1.0)
    _array_then_string_arrive(ctx, q)
    if HAVE_QSIZE:
        assert q.qsize() == 0
    close(q)


@needs_memfd
def test_stray_messages_on_the_side_channel_are_dropped(ctx):
    import socket

    pytest.importorskip("numpy")
    q = ctx.Queue()
    # As a reader killed between a record and its memfds leaves them; and garbage.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, os.dup(q._side_writer.fileno()))
    stray = os.memfd_create("stray")
    socket.send_fds(sock, [queues._TOKEN.pack(12345)], [stray])
    sock.send(b"garbage that is no token")
    os.close(stray)
    sock.close()
    _array_then_string_arrive(ctx, q)
    # The reader took the stray messages off the side channel, and closed the memfd.
    assert not queues._readable(q._side_reader.fileno(), 0)
    assert not [t for t in _fd_targets() if "memfd:stray" in t]
    close(q)


@needs_memfd
def test_arrays_go_through_the_pipe_when_no_memfd_can_be_made(ctx):
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    arr = np.arange(queues._FD_MIN_SIZE // 8, dtype=np.float64)
    p = start(ctx, h.put_all_without_memfds, q, [arr, arr])
    assert _next_record_raw(q) == (queues._KIND_OOB, [arr.nbytes | queues._OOB_MAPPABLE])
    assert np.array_equal(q.get(timeout=60), arr)
    join_all([p])
    close(q)


def test_large_objects_come_back_as_themselves(ctx):
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    raw = bytearray(range(256)) * 8192  # 2 MiB
    arr = np.arange(1 << 19, dtype=np.float64)  # 4 MiB
    data = b"\x07" * (3 << 20)
    p = start(ctx, h.put_all, q, [raw, arr, data, (arr, raw)])
    got = q.get(timeout=60)
    assert type(got) is bytearray and got == raw
    got = q.get(timeout=60)
    assert type(got) is np.ndarray and np.array_equal(got, arr)
    got[0] = -1.0  # writable, like any array the stdlib delivers
    assert got.flags.writeable and got[0] == -1.0
    got = q.get(timeout=60)
    assert type(got) is bytes and got == data
    got_arr, got_raw = q.get(timeout=60)
    assert np.array_equal(got_arr, arr) and got_raw == raw
    join_all([p])
    close(q)


def test_reader_end_is_non_blocking_and_get_still_waits(ctx):
    q = ctx.Queue()
    assert os.get_blocking(q._reader.fileno()) is False
    with pytest.raises(queue.Empty):
        q.get_nowait()
    start_time = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - start_time >= 0.29
    p = start(ctx, h.put_all, q, ["late"])
    assert q.get() == "late"  # blocks until it comes, without a timeout
    join_all([p])
    close(q)


def test_producer_killed_mid_oob_record(ctx):
    q = ctx.Queue()
    done = ctx.Event()
    # 4 MB cannot fit in the pipe: the feeder stays in the middle of a kind-1 record.
    p = start(ctx, h.put_and_report, q, bytearray(b"x" * 4_000_000), done)
    assert done.wait(60)
    assert q._reader.poll(60)
    p.kill()
    p.join(60)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.5)
    p2 = start(ctx, h.put_all, q, [bytearray(b"y" * 3_000_000), "after"])
    assert q.get(timeout=60) == bytearray(b"y" * 3_000_000)
    assert q.get(timeout=60) == "after"
    join_all([p2])
    if HAVE_QSIZE:
        assert q.qsize() == 0
    close(q)
