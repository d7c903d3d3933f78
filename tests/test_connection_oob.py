"""Large objects through Connections out of band (memfds), see ``multiprocess._conn_oob``.

Round trips to a child under every start method (a duplex Pipe, a Listener /
Client pair, a manager proxy), receivers killed with descriptors in flight,
forged frames, ``recv_bytes`` on such frames, and interoperation with the
standard library's ``multiprocessing.connection`` (which must see none of it).
"""

from __future__ import annotations

import array
import os
import pickle
import signal
import socket
import struct
import threading

import _conn_oob_helpers as h
import numpy as np
import pytest
from _fd_helpers import fd_count, fd_targets

from multiprocess import _conn_oob, _memfd, resource_sharer
from multiprocess import connection as ours
from multiprocess.connection import Client, Connection, Listener, Pipe

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not _memfd.HAVE_MEMFD, reason="memfds and SCM_RIGHTS are Linux only"),
]

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _no_spare_memfds():
    """A send takes one of this process's spare memfds (see _memfd.take_spare) if
    earlier tests left some, and sends it away: the tests that count descriptors
    start without any."""
    _memfd.drop_spares()


@pytest.fixture(autouse=True)
def _stop_resource_sharer():
    """Pickling a connection starts the sharer thread; later forks should not see it."""
    yield
    resource_sharer.stop(timeout=30)


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _payloads():
    """(name, object) pairs: every kind of large (and a few small) objects."""
    big = np.arange(MIB + 3, dtype=np.uint8)
    return [
        ("numpy-empty", np.zeros(0)),
        ("numpy-1MiB+3", big),
        ("numpy-2d", np.arange(2 * MIB // 8, dtype=np.float64).reshape(512, -1)),
        ("numpy-noncontiguous", np.arange(3 * MIB // 8, dtype=np.int64)[::3]),
        ("numpy-fortran", np.asfortranarray(np.ones((512, 600)))),
        ("numpy-readonly", _read_only(big)),
        ("bytes", b"\x01" * (3 * MIB + 1)),
        ("bytes-empty", b""),
        ("bytearray", bytearray(b"\x02" * (2 * MIB + 5))),
        ("array.array", array.array("d", range(MIB // 4))),
        ("memoryview", memoryview(bytearray(b"\x03" * (MIB + 7)))),
        ("large-pickle", [str(i) for i in range(200_000)]),
        ("mixed", {"a": big, "b": b"\x04" * (2 * MIB), "c": [big[::2], "small"]}),
        ("small", ("just", 1, "tuple")),
    ]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
            and a.flags.writeable == b.flags.writeable
        )
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return type(b) is list and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, memoryview):
        return isinstance(b, memoryview) and a.tobytes() == b.tobytes() and a.format == b.format
    return type(a) is type(b) and a == b


def _leaked(before):
    """The descriptors open now that were not before: what a test left open.

    (Not a count: a descriptor of an earlier test that its finalizer closes
    meanwhile is no leak of this one.)
    """
    return sorted(fd_targets() - before)


def _shm():
    """/dev/shm but for named semaphores (whose lifetimes follow other tests' objects)."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {name for name in names if not name.startswith("sem.")}


def _our_memfds():
    """Descriptors of this process that are memfds made by a connection."""
    return [target for _fd, target in fd_targets() if "memfd:multiprocess-connection" in target]


def _raw_header(conn):
    """The next length word on ``conn``, read by hand."""
    return struct.unpack("!i", os.read(conn.fileno(), 4))[0]


# -- through a Pipe to a child and back ----------------------------------------


def test_pipe_round_trip_to_child(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=h.echo, args=(b,), daemon=True)
    p.start()
    b.close()
    with a:
        assert a.recv() is True  # the child's end still sends out of band
        for name, obj in _payloads():
            a.send(obj)
            assert _same(obj, a.recv()), name
        a.send(None)
    p.join(60)
    assert p.exitcode == 0


def test_large_objects_go_out_of_band_and_small_ones_stay_plain():
    a, b = Pipe()
    with a, b:
        a.send(np.ones(MIB))
        assert _raw_header(b) == _conn_oob.OOB_LENGTH_WORD
        # Read the rest through the connection (the length word is consumed).
        assert np.array_equal(_conn_oob.recv(b), np.ones(MIB))
        a.send((1, "small"))
        payload = pickle.dumps((1, "small"), protocol=5)
        assert _raw_header(b) == len(payload)
        assert os.read(b.fileno(), len(payload)) == payload
        # send_bytes is the standard library's format whatever the size
        # (from a thread: 4 MiB do not fit in the socket's buffer).
        t = threading.Thread(target=a.send_bytes, args=(b"\x05" * (4 * MIB),))
        t.start()
        assert _raw_header(b) == 4 * MIB
        rest = bytearray(4 * MIB)
        view = memoryview(rest)
        got = 0
        while got < len(rest):
            got += os.readv(b.fileno(), [view[got:]])
        t.join()
        assert rest == b"\x05" * (4 * MIB)


def test_poll_and_wait_see_out_of_band_frames():
    a, b = Pipe()
    with a, b:
        assert not b.poll()
        a.send(np.ones(MIB))
        assert b.poll(10)
        assert ours.wait([b], 10) == [b]
        assert np.array_equal(b.recv(), np.ones(MIB))
        assert not b.poll()


def test_received_arrays_are_writable_maps():
    a, b = Pipe()
    with a, b:
        a.send(np.zeros(MIB))
        got = b.recv()
        got[:] = 7  # its own memory: the sender's copy is not shared
        assert got.sum() == 7 * MIB
        a.send(bytearray(2 * MIB))
        ba = b.recv()
        assert type(ba) is bytearray
        ba[0] = 1


def test_more_buffers_than_descriptors_per_message():
    arrays = [np.full(MIB // 8, i, dtype=np.float64) for i in range(_conn_oob.MAX_FDS + 3)]
    a, b = Pipe()
    with a, b:
        before = fd_targets()
        # From a thread: the buffers beyond MAX_FDS go through the socket.
        t = threading.Thread(target=a.send, args=(arrays,))
        t.start()
        got = b.recv()
        t.join()
        assert len(got) == len(arrays)
        assert all(np.array_equal(x, y) for x, y in zip(arrays, got))
        del got
        assert _leaked(before) == []


# -- recv_bytes on an out-of-band frame ------------------------------------------


def test_recv_bytes_gives_an_equivalent_plain_pickle():
    a, b = Pipe()
    with a, b:
        for name, obj in _payloads():
            a.send(obj)
            data = b.recv_bytes()
            assert isinstance(data, bytes)
            got = pickle.loads(data)
            if isinstance(obj, memoryview):
                assert got.tobytes() == obj.tobytes(), name
            elif isinstance(obj, np.ndarray):
                assert np.array_equal(got, obj) and got.flags.writeable == obj.flags.writeable
            elif name != "mixed":
                assert _same(obj, got), name
        a.send(np.ones(MIB // 8))
        buf = bytearray(3 * MIB)
        n = b.recv_bytes_into(buf, 10)
        assert np.array_equal(pickle.loads(buf[10 : 10 + n]), np.ones(MIB // 8))


def test_recv_bytes_into_too_short_and_maxlength():
    a, b = Pipe()
    with a, b:
        a.send(b"\x06" * (2 * MIB))
        with pytest.raises(Exception) as info:
            b.recv_bytes_into(bytearray(100))
        assert type(info.value).__name__ == "BufferTooShort"
        assert pickle.loads(info.value.args[0]) == b"\x06" * (2 * MIB)
        a.send("still in step")
        assert b.recv() == "still in step"
        a.send(b"\x06" * (2 * MIB))
        with pytest.raises(OSError, match="bad message length"):
            b.recv_bytes(maxlength=1000)
        assert not b.readable


# -- Listener / Client -----------------------------------------------------------


def test_listener_client_negotiate_out_of_band(ctx):
    with Listener(family="AF_UNIX", authkey=b"secret") as listener:
        p = ctx.Process(target=h.client_echo, args=(listener.address, b"secret"), daemon=True)
        p.start()
        with listener.accept() as conn:
            assert conn._oob
            assert conn.recv() is True  # and the child's side too
            for name, obj in _payloads():
                conn.send(obj)
                assert _same(obj, conn.recv()), name
            conn.send(None)
    p.join(60)
    assert p.exitcode == 0


@pytest.mark.parametrize(
    ("family", "authkey"), [("AF_UNIX", None), ("AF_INET", b"k")], ids=["no-authkey", "tcp"]
)
def test_no_out_of_band_without_authkey_or_over_tcp(family, authkey):
    with Listener(family=family, authkey=authkey) as listener:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("c", listener.accept()))
        t.start()
        with Client(listener.address, authkey=authkey) as c:
            t.join()
            with result["c"] as s:
                assert not c._oob and not s._oob
                sender = threading.Thread(target=c.send, args=(np.ones(MIB),))
                sender.start()
                size = _raw_header(s)  # a plain frame, as the standard library's
                assert size > 8 * MIB
                got = 0
                while got < size:
                    got += len(os.read(s.fileno(), size - got))
                sender.join()


# -- a manager proxy ---------------------------------------------------------------


def test_manager_list_of_large_arrays(ctx):
    big = np.arange(2 * MIB // 8, dtype=np.float64)
    with ctx.Manager() as manager:
        shared = manager.list()
        shared.append(big)
        shared.append(b"\x07" * (2 * MIB))
        assert np.array_equal(shared[0], big)
        assert shared[1] == b"\x07" * (2 * MIB)
        assert len(shared) == 2
        # The proxy's connection negotiated out-of-band frames with the server.
        assert shared._tls.connection._conn._oob


# -- a receiver that dies with descriptors in flight -------------------------------


def test_receiver_killed_before_mapping_leaks_nothing(ctx):
    shm = _shm()
    a, b = ctx.Pipe()
    p = ctx.Process(target=h.die_when_fds_arrive, args=(b,), daemon=True)
    p.start()
    b.close()
    assert a.recv() == "ready"
    fds = fd_targets()  # (with the child's sentinel and our end)
    a.send([np.ones(MIB), b"\x08" * (2 * MIB), bytearray(3 * MIB)])
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert _leaked(fds) == []  # the memfds in flight went with the child's end
    assert _our_memfds() == []
    a.close()
    assert _shm() == shm


def test_receiver_killed_before_recv_leaks_nothing(ctx):
    event = ctx.Event()
    a, b = ctx.Pipe()
    p = ctx.Process(target=h.wait_forever, args=(b, event), daemon=True)
    p.start()
    b.close()
    assert a.recv() == "ready"
    fds, shm = fd_targets(), _shm()  # (the event's semaphores are in /dev/shm)
    a.send(np.ones(4 * MIB))
    p.kill()
    p.join(60)
    assert _leaked(fds) == []
    assert _our_memfds() == []
    a.close()
    assert _shm() == shm


# -- forged and broken frames --------------------------------------------------------


def _capable_pair():
    """A Connection that reads out-of-band frames, and a raw socket to feed it."""
    x, y = socket.socketpair()
    conn = Connection(x.detach())
    conn._oob_capable = True
    return conn, y


def _table(kind=0, entries=(), version=1, count=None):
    count = len(entries) if count is None else count
    return struct.pack("!BBxxI", version, kind, count) + b"".join(
        struct.pack("!Q", e) for e in entries
    )


def _send_forged(peer, table, stream=b"", fds=()):
    peer.sendall(struct.pack("!i", -2))
    peer.sendmsg(
        [table], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    )
    peer.sendall(stream)


def _plain(obj):
    data = pickle.dumps(obj)
    return struct.pack("!i", len(data)) + data


IN_FD = 1 << 63


def _memfd_of(data):
    fd = os.memfd_create("test")
    os.write(fd, data)
    return fd


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (_table(version=9, entries=[5]), "version 9"),
        (_table(kind=7, entries=[5]), "kind 7"),
        (_table(entries=[]), "0 entries"),
        (_table(count=2**31, entries=[]), "entries"),
    ],
    ids=["version", "kind", "no-entries", "too-many-entries"],
)
def test_malformed_tables_raise_and_stop_reading(table, match):
    conn, peer = _capable_pair()
    before = fd_count()
    with conn, peer:
        _send_forged(peer, table)
        with pytest.raises(_conn_oob.OutOfBandFrameError, match=match):
            conn.recv()
        assert not conn.readable
    assert fd_count() == before - 2


def test_descriptors_that_do_not_match_the_table_raise_and_keep_the_stream():
    conn, peer = _capable_pair()
    payload = pickle.dumps(b"x" * 10)
    with conn, peer:
        before = fd_targets()
        cases = [
            # an entry in a memfd, but no descriptor came
            (_table(entries=[len(payload), IN_FD | MIB]), payload, []),
            # a descriptor too many
            (_table(entries=[len(payload)]), payload, [_memfd_of(b"y")]),
            # a memfd of the wrong size
            (_table(entries=[IN_FD | 100]), b"", [_memfd_of(b"z" * 50)]),
            # a descriptor that is not a memfd
            (_table(entries=[IN_FD | 100]), b"", list(os.pipe())),
        ]
        for table, stream, fds in cases:
            _send_forged(peer, table, stream, fds[:1])
            for fd in fds:
                os.close(fd)
            with pytest.raises(_conn_oob.OutOfBandFrameError):
                conn.recv()
            peer.sendall(_plain("in step"))
            assert conn.recv() == "in step"
        assert _leaked(before) == []


def test_garbage_pickle_in_a_memfd_raises_and_keeps_the_stream():
    conn, peer = _capable_pair()
    with conn, peer:
        fd = _memfd_of(b"\x80\x05garbage" * 10)
        _send_forged(peer, _table(entries=[IN_FD | 90]), b"", [fd])
        os.close(fd)
        with pytest.raises(pickle.UnpicklingError):
            conn.recv()
        peer.sendall(_plain(42))
        assert conn.recv() == 42


def test_truncated_out_of_band_frame_is_eof():
    conn, peer = _capable_pair()
    with conn:
        peer.sendall(struct.pack("!i", -2) + b"\x01\x00")
        peer.close()
        with pytest.raises(EOFError):
            conn.recv()


def test_length_word_minus_two_on_a_plain_connection_is_still_bad():
    x, y = socket.socketpair()
    conn = Connection(x.detach())  # made by hand: not known to pass descriptors
    with conn, y:
        y.sendall(struct.pack("!i", -2) + _table(entries=[1]))
        with pytest.raises(OSError, match="bad message length"):
            conn.recv()


# -- interoperation with the standard library ----------------------------------------


def _stdlib_connection():
    import multiprocessing.connection  # the reference implementation, only in tests

    return multiprocessing.connection


@pytest.mark.parametrize("ours_listens", [True, False], ids=["our-listener", "stdlib-listener"])
def test_stdlib_peer_exchanges_large_objects(ours_listens):
    std = _stdlib_connection()
    listener_mod, client_mod = (ours, std) if ours_listens else (std, ours)
    objects = [np.arange(MIB, dtype=np.uint8), b"\x09" * (2 * MIB), bytearray(2 * MIB), "small"]
    with listener_mod.Listener(family="AF_UNIX", authkey=b"k") as listener:
        server = {}

        def serve():
            with listener.accept() as conn:
                server["oob"] = getattr(conn, "_oob", None)
                for _ in objects:
                    conn.send(conn.recv())

        t = threading.Thread(target=serve)
        t.start()
        with client_mod.Client(listener.address, authkey=b"k") as c:
            for obj in objects:
                c.send(obj)
                got = c.recv()
                assert np.array_equal(got, obj) if isinstance(obj, np.ndarray) else got == obj
            assert not getattr(c, "_oob", False)
        t.join(60)
    assert not server["oob"]
