"""Connections, Pipe, Listener/Client, authentication, wait() and connection pickling.

Cross-process behaviour runs under every start method (``ctx``); framing, argument
checks and protocol details that need no second process run once.  Two-party
protocols that need both ends at once (the handshake against the standard
library's implementation) use a thread for the other end.
"""

from __future__ import annotations

import array
import collections
import errno
import fractions
import functools
import os
import pickle
import socket
import struct
import threading
import time
import tracemalloc

import _conn_helpers as h
import pytest

import multiprocess
from multiprocess import connection, resource_sharer
from multiprocess.connection import (
    AuthenticationError,
    BufferTooShort,
    Client,
    Connection,
    Listener,
    Pipe,
    wait,
)

# -- helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _stop_resource_sharer():
    """Pickling a connection starts the sharer thread; later forks should not see it."""
    yield
    resource_sharer.stop(timeout=30)


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join(p):
    p.join(timeout=60)
    assert p.exitcode == 0


def frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def raw_pair():
    """A Connection whose peer is a plain socket we can feed arbitrary bytes."""
    a, b = socket.socketpair()
    return Connection(a.detach()), b


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


VALUES = [
    None,
    True,
    0,
    -(2**70),
    3.25,
    complex(1, -2),
    "text é ✓",
    b"\x00bytes\xff",
    bytearray(b"mutable"),
    (1, (2, 3)),
    [1, [2, [3]]],
    {"a": 1, 2: [3]},
    {1, 2, 3},
    frozenset({"x"}),
    fractions.Fraction(1, 3),
    collections.OrderedDict(a=1),
    ValueError("boom", 3),
    list(range(100_000)),
    Point(1, 2),
    array.array("d", [1.5, 2.5]),
    range(3, 10, 2),
]


# -- sending and receiving ------------------------------------------------


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_send_recv_round_trips(value):
    def same(x, y):
        if isinstance(value, BaseException):  # exceptions do not compare equal
            return type(x) is type(y) and x.args == y.args
        return type(x) is type(y) and x == y

    a, b = Pipe()
    with a, b:
        for sender, receiver in [(a, b), (b, a)]:
            # A thread sends: a big message does not fit in the socket buffer.
            t = threading.Thread(target=sender.send, args=(value,))
            t.start()
            assert same(receiver.recv(), value)
            t.join()


def test_send_recv_functions_in_process():
    k = 10
    a, b = Pipe()
    with a, b:
        a.send(lambda x: x + k)
        assert b.recv()(1) == 11
        a.send(h.make_closure(5))
        assert b.recv()(1) == 6
        a.send(functools.partial(pow, 2))
        assert b.recv()(10) == 1024


def test_functions_cross_to_child(ctx):
    k = 3
    a, b = ctx.Pipe()
    p = start(ctx, h.call_and_reply, b)
    b.close()
    with a:
        a.send((lambda x: x + k, (4,)))
        assert a.recv() == 7
        a.send((h.make_closure(100), (1,)))
        assert a.recv() == 101
        a.send((Point, (1, 2)))
        assert a.recv() == Point(1, 2)
        a.send(None)
        with pytest.raises(EOFError):
            a.recv()
    join(p)


def test_recursive_closure_crosses_to_child(ctx):
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    a, b = ctx.Pipe()
    p = start(ctx, h.call_and_reply, b)
    b.close()
    with a:
        a.send((fact, (5,)))
        assert a.recv() == 120
        a.send(None)
    join(p)


def test_echo_in_child_bytes_and_big_messages(ctx):
    a, b = ctx.Pipe()
    p = start(ctx, h.echo_bytes, b)
    b.close()
    with a:
        for payload in [b"x", b"hello" * 1000, os.urandom(16 * 1024 * 1024)]:
            a.send_bytes(payload)
            assert a.recv_bytes() == payload
        # Above the up-front allocation limit: the buffer grows as data arrives.
        big = b"\x01" * (connection._PREALLOC_LIMIT + 12345)
        a.send_bytes(big)
        assert a.recv_bytes() == big
        # recv() of messages on both sides of the preallocation limit.
        for n in (connection._PREALLOC_LIMIT - 100, connection._PREALLOC_LIMIT + 100):
            obj = {"blob": b"\x02" * n}
            a.send(obj)  # the child echoes the serialized bytes as they are
            assert a.recv() == obj
        a.send_bytes(h.SENTINEL)
        with pytest.raises(EOFError):
            a.recv_bytes()
    join(p)


def test_send_bytes_offset_and_size():
    msg = b"abcdefghijklmnopqrstuvwxyz"
    a, b = Pipe()
    with a, b:
        a.send_bytes(msg)
        assert b.recv_bytes() == msg
        a.send_bytes(msg, 5)
        assert b.recv_bytes() == msg[5:]
        a.send_bytes(msg, 7, 8)
        assert b.recv_bytes() == msg[7:15]
        a.send_bytes(msg, 26)
        assert b.recv_bytes() == b""
        a.send_bytes(msg, 26, 0)
        assert b.recv_bytes() == b""
        for args, text in [
            ((27,), "buffer length < offset"),
            ((22, 5), "buffer length < offset \\+ size"),
            ((26, 1), "buffer length < offset \\+ size"),
            ((-1,), "offset is negative"),
            ((4, -1), "size is negative"),
        ]:
            with pytest.raises(ValueError, match=text):
                a.send_bytes(msg, *args)
        assert not b.poll()


def test_send_bytes_counts_bytes_for_wide_items():
    arr = array.array("i", range(10))
    a, b = Pipe()
    with a, b:
        a.send_bytes(arr, arr.itemsize * 2, arr.itemsize * 3)
        assert b.recv_bytes() == arr[2:5].tobytes()
        a.send_bytes(memoryview(bytes(range(12))).cast("B", (3, 4)))
        assert b.recv_bytes() == bytes(range(12))


def test_recv_bytes_into():
    arr = array.array("i", range(4))
    a, b = Pipe()
    with a, b:
        buf = array.array("i", [0] * 10)
        a.send_bytes(arr)
        assert b.recv_bytes_into(buf) == 4 * buf.itemsize
        assert list(buf) == [0, 1, 2, 3] + [0] * 6

        buf = array.array("i", [0] * 10)
        a.send_bytes(arr)
        assert b.recv_bytes_into(buf, 3 * buf.itemsize) == 4 * buf.itemsize
        assert list(buf) == [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]

        big = b"hello world" * 10
        buf = bytearray(40)
        a.send_bytes(big)
        with pytest.raises(BufferTooShort) as info:
            b.recv_bytes_into(buf)
        assert info.value.args == (big,)
        assert buf == bytearray(40)  # untouched

        # The message was consumed; the connection is still in sync.
        a.send(("next", 1))
        assert b.recv() == ("next", 1)

        with pytest.raises(ValueError, match="negative offset"):
            b.recv_bytes_into(bytearray(4), -1)
        with pytest.raises(ValueError, match="offset too large"):
            b.recv_bytes_into(bytearray(4), 5)
        with pytest.raises(TypeError):
            b.recv_bytes_into(b"read-only")
        with pytest.raises(TypeError):
            b.recv_bytes_into(memoryview(bytearray(10))[::2])  # not contiguous
        a.send_bytes(b"kept")  # the failed calls above read nothing
        assert b.recv_bytes() == b"kept"
        a.send_bytes(b"abcd")
        exact = bytearray(4)
        assert b.recv_bytes_into(exact) == 4 and exact == b"abcd"
        a.send_bytes(b"")
        assert b.recv_bytes_into(bytearray(0)) == 0


def test_recv_bytes_into_large_message():
    a, b = Pipe()
    payload = os.urandom(connection._READ_CHUNK * 3)
    t = threading.Thread(target=a.send_bytes, args=(payload,))
    t.start()
    buf = bytearray(len(payload) + 10)
    assert b.recv_bytes_into(buf, 10) == len(payload)
    t.join()
    assert buf[10:] == payload
    a.close()
    b.close()


def test_recv_bytes_maxlength():
    a, b = Pipe()
    with a, b:
        with pytest.raises(ValueError, match="negative maxlength"):
            b.recv_bytes(-1)
        a.send_bytes(b"0123456789")
        with pytest.raises(OSError, match="bad message length"):
            b.recv_bytes(maxlength=3)
        # The rest of that message is still in the stream: reading is over.
        assert b.readable is False and not b.closed
        with pytest.raises(OSError, match="write-only"):
            b.recv_bytes()
        b.send(1)  # writing still works
        assert a.recv() == 1

    r, w = Pipe(duplex=False)
    with r, w:
        w.send_bytes(b"0123456789")
        assert r.recv_bytes(maxlength=10) == b"0123456789"
        w.send_bytes(b"0123456789")
        with pytest.raises(OSError, match="bad message length"):
            r.recv_bytes(maxlength=9)
        assert r.closed


def test_poll_and_timeouts():
    a, b = Pipe()
    with a, b:
        assert a.poll() is False
        assert a.poll(-1) is False
        t0 = time.monotonic()
        assert a.poll(0.2) is False
        assert time.monotonic() - t0 >= 0.19
        b.send_bytes(b"")
        assert a.poll() is True
        assert a.poll(None) is True  # does not consume
        assert a.recv_bytes() == b""
        b.send(None)
        t0 = time.monotonic()
        assert a.poll(10) is True
        assert time.monotonic() - t0 < 5
        assert a.recv() is None


def test_poll_sees_data_from_child_and_messages_do_not_merge(ctx):
    a, b = ctx.Pipe()
    go_r, go_w = ctx.Pipe(duplex=False)
    p = start(ctx, h.send_bytes_after_go, go_r, b, b"late")
    with a:
        assert a.poll(0.05) is False
        go_w.send("go")
        assert a.poll(30) is True
        assert a.poll(0) is True
        assert a.recv_bytes() == b"late"
        assert a.poll(0) is False
    join(p)
    for c in (b, go_r, go_w):
        c.close()


def test_duplex_false():
    reader, writer = Pipe(duplex=False)
    with reader, writer:
        writer.send(1)
        assert reader.recv() == 1
        assert (reader.readable, reader.writable) == (True, False)
        assert (writer.readable, writer.writable) == (False, True)
        with pytest.raises(OSError, match="connection is read-only"):
            reader.send(2)
        with pytest.raises(OSError, match="connection is write-only"):
            writer.recv()
        with pytest.raises(OSError, match="connection is write-only"):
            writer.poll()


def test_closed_connection():
    a, b = Pipe()
    assert not a.closed
    fd = a.fileno()
    with a:
        pass
    assert a.closed
    a.close()  # twice is fine
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    for op, args in [
        (a.send, (1,)),
        (a.recv, ()),
        (a.send_bytes, (b"x",)),
        (a.recv_bytes, ()),
        (a.recv_bytes_into, (bytearray(1),)),
        (a.poll, ()),
        (a.fileno, ()),
    ]:
        with pytest.raises(OSError, match="handle is closed"):
            op(*args)
    assert "closed" in repr(a)
    b.close()


def test_eof_when_peer_closes():
    a, b = Pipe()
    b.send("last")
    b.close()
    assert a.poll(10)  # EOF counts as readable
    assert a.recv() == "last"
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(EOFError):
        a.recv_bytes()
    with pytest.raises(EOFError):
        a.recv_bytes_into(bytearray(8))
    with pytest.raises(OSError):  # EPIPE: nobody reads any more
        a.send_bytes(b"x" * 100_000)
    a.close()


def test_eof_from_child_exit(ctx):
    a, b = ctx.Pipe()
    p = start(ctx, h.send_sequence, b, [1, "two", (3,)])
    b.close()
    got = []
    with a:
        while True:
            try:
                got.append(a.recv())
            except EOFError:
                break
    assert got == [1, "two", (3,)]
    join(p)


def test_invalid_handles():
    with pytest.raises(ValueError, match="invalid handle"):
        Connection(-1)
    with pytest.raises(ValueError, match="at least one"):
        Connection(0, readable=False, writable=False)
    with pytest.raises(TypeError):
        Connection("3")
    conn = Connection(44977608)
    try:
        try:
            conn.poll()
        except (ValueError, OSError):
            pass
    finally:
        conn._handle = None


def test_serializer_is_used_by_send():
    a, b = Pipe(serializer="pickle")
    with a, b:
        a.send({"plain": [1, 2]})
        assert b.recv() == {"plain": [1, 2]}
        with pytest.raises(Exception):  # noqa: B017 - whatever the serializer raises
            a.send(lambda: 1)  # the stdlib pickler cannot do this
        assert not b.poll()  # and nothing was written
    a, b = Pipe(serializer="dill")
    with a, b:
        a.send(lambda: 1)
        assert b.recv()() == 1


# -- bad input ------------------------------------------------------------


def _evil_pickle(path: str) -> bytes:
    class CreatesFile:
        def __reduce__(self):
            return (open, (path, "w"))

    return pickle.dumps(CreatesFile())


def test_garbage_and_truncated_pickles_raise_and_keep_the_stream(tmp_path):
    conn, peer = raw_pair()
    with conn, peer:
        for garbage in [b"\x80\x05garbage", b"not a pickle at all", os.urandom(64)]:
            peer.sendall(frame(garbage))
            with pytest.raises(Exception) as info:
                conn.recv()
            assert not isinstance(info.value, EOFError)
            peer.sendall(frame(pickle.dumps("still in sync")))
            assert conn.recv() == "still in sync"
        for broken in [b"", pickle.dumps(list(range(100)))[:-5]]:
            peer.sendall(frame(broken))
            with pytest.raises(pickle.UnpicklingError):
                conn.recv()
        peer.sendall(frame(pickle.dumps(42)))
        assert conn.recv() == 42


@pytest.mark.parametrize(
    "chunks",
    [
        [b"\x00\x00"],  # half a header
        [struct.pack("!i", 100), b"x" * 10],  # half a payload
        [struct.pack("!i", -1), b"\x00\x00\x00"],  # half a long header
        [struct.pack("!i", -1) + struct.pack("!Q", 2**20), b"y" * 1000],
    ],
    ids=["header", "payload", "long-header", "long-payload"],
)
def test_truncated_frames_raise_eoferror(chunks):
    conn, peer = raw_pair()
    with conn:
        for chunk in chunks:
            peer.sendall(chunk)
        peer.close()
        with pytest.raises(EOFError) as info:
            conn.recv_bytes()
        # What the standard library raises mid-message, for callers that catch it.
        assert isinstance(info.value, OSError)


@pytest.mark.parametrize("announced", [2**62, 2**31 - 1, 2**40], ids=["2**62", "2**31-1", "2**40"])
def test_forged_huge_length_allocates_only_what_arrives(announced):
    conn, peer = raw_pair()
    if announced > 0x7FFFFFFF:
        header = struct.pack("!i", -1) + struct.pack("!Q", announced)
    else:
        header = struct.pack("!i", announced)
    other_a, other_b = Pipe()
    with conn, other_a, other_b:
        peer.sendall(header + b"z" * 1000)
        peer.close()
        tracemalloc.start()
        try:
            t0 = time.monotonic()
            with pytest.raises(EOFError):
                conn.recv_bytes()
            elapsed = time.monotonic() - t0
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * connection._READ_CHUNK, peak
        assert elapsed < 10
        # Other connections are unaffected.
        other_a.send("fine")
        assert other_b.recv() == "fine"


def test_forged_length_with_maxlength_is_refused_before_reading():
    conn, peer = raw_pair()
    with conn, peer:
        peer.sendall(struct.pack("!i", -1) + struct.pack("!Q", 2**62))
        tracemalloc.start()
        try:
            with pytest.raises(OSError, match="bad message length"):
                conn.recv_bytes(maxlength=1024)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024


@pytest.mark.parametrize(
    "header",
    [struct.pack("!i", -2), struct.pack("!i", -(2**31)), struct.pack("!iQ", -1, 2**64 - 1)],
    ids=["-2", "min-int", "above-maxsize"],
)
def test_impossible_lengths_are_bad_message_length(header):
    conn, peer = raw_pair()
    with conn, peer:
        peer.sendall(header + b"payload")
        with pytest.raises(OSError, match="bad message length"):
            conn.recv_bytes()
        assert not conn.readable


def test_broken_frames_from_child(ctx):
    a, b = ctx.Pipe()
    p = start(ctx, h.write_chunks_then_exit, b, [frame(b"good"), struct.pack("!i", 50), b"short"])
    b.close()
    with a:
        assert a.recv_bytes() == b"good"
        with pytest.raises(EOFError):
            a.recv_bytes()
    join(p)


# -- wire compatibility with the standard library -------------------------


def test_wire_format_matches_stdlib():
    import multiprocessing.connection as std

    s1, s2 = socket.socketpair()
    ours, theirs = Connection(s1.detach()), std.Connection(s2.detach())
    with ours, theirs:
        ours.send_bytes(b"to stdlib")
        assert theirs.recv_bytes() == b"to stdlib"
        theirs.send_bytes(b"from stdlib")
        assert ours.recv_bytes() == b"from stdlib"
        ours.send({"obj": [1, 2]})
        assert theirs.recv() == {"obj": [1, 2]}
        theirs.send(("tuple", 3.5))
        assert ours.recv() == ("tuple", 3.5)
        big = os.urandom(100_000)
        t = threading.Thread(target=theirs.send_bytes, args=(big,))
        t.start()
        assert ours.recv_bytes() == big
        t.join()


def test_long_header_format(monkeypatch):
    import multiprocessing.connection as std

    monkeypatch.setattr(connection, "_SHORT_MAX", 10)
    s1, s2 = socket.socketpair()
    ours, theirs = Connection(s1.detach()), std.Connection(s2.detach())
    with ours, theirs:
        ours.send_bytes(b"x" * 11)
        assert theirs.recv_bytes() == b"x" * 11  # stdlib reads the -1 + 8-byte header
        ours.send_bytes(b"y" * 11)
        raw = os.read(theirs.fileno(), 12)
        assert raw == struct.pack("!i", -1) + struct.pack("!Q", 11)
        assert os.read(theirs.fileno(), 11) == b"y" * 11
        ours.send_bytes(b"z" * 10)  # at the limit: short header
        assert os.read(theirs.fileno(), 4) == struct.pack("!i", 10)


# -- Listener and Client --------------------------------------------------

FAMILIES = connection.families


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("authkey", [None, b"secret"], ids=["noauth", "auth"])
def test_listener_client_across_processes(ctx, family, authkey):
    report_r, report_w = ctx.Pipe(duplex=False)
    with Listener(family=family, authkey=authkey) as listener:
        assert connection.address_type(listener.address) == family
        p = start(ctx, h.client_send, listener.address, authkey, "hello", report_w)
        report_w.close()
        with listener.accept() as conn:
            assert conn.recv() == "hello"
            conn.send("welcome")
        if family == "AF_INET":
            assert listener.last_accepted[0] == "127.0.0.1"
    assert report_r.recv() == ("ok", "welcome")
    join(p)
    report_r.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_listener_in_child(ctx, family):
    report_r, report_w = ctx.Pipe(duplex=False)
    p = start(ctx, h.listener_in_child, family, b"key", report_w)
    report_w.close()
    address = report_r.recv()
    with Client(address, authkey=b"key") as c:
        c.send([1, 2, 3])
        assert c.recv() == [1, 2, 3]
    join(p)
    report_r.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_authkey_fails_on_both_sides_and_listener_survives(ctx, family):
    with Listener(family=family, authkey=b"right") as listener:
        bad_r, bad_w = ctx.Pipe(duplex=False)
        p = start(ctx, h.client_send, listener.address, b"wrong", "intruder", bad_w)
        bad_w.close()
        with pytest.raises(AuthenticationError):
            listener.accept()
        assert bad_r.recv()[0] == "AuthenticationError"
        join(p)

        good_r, good_w = ctx.Pipe(duplex=False)
        p = start(ctx, h.client_send, listener.address, b"right", "friend", good_w)
        good_w.close()
        with listener.accept() as conn:
            assert conn.recv() == "friend"
            conn.send("ok")
        assert good_r.recv() == ("ok", "ok")
        join(p)
        bad_r.close()
        good_r.close()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [40, 1000], ids=["small", "oversize"])
def test_server_never_unpickles_from_unauthenticated_peer(tmp_path, family, size):
    probe = tmp_path / "probe"
    pickle.loads(_evil_pickle(str(probe))).close()
    assert probe.exists()  # the payload is live
    target = tmp_path / "pwned"
    evil = _evil_pickle(str(target))
    evil += b"." * (size - len(evil)) if size > len(evil) else b""
    with Listener(family=family, authkey=b"secret") as listener:
        fam = getattr(socket, family)
        with socket.socket(fam) as raw:
            raw.connect(listener.address)
            # Skip the handshake: send a pickle straight away.
            raw.sendall(frame(evil))
            with pytest.raises((AuthenticationError, OSError)):
                listener.accept()
        assert not target.exists()
        # The listener keeps serving.
        t, result = _run_in_thread(listener.accept)
        with Client(listener.address, authkey=b"secret") as good:
            t.join()
            with result["value"] as conn:
                good.send("after")
                assert conn.recv() == "after"
    assert not target.exists()


def test_silent_client_does_not_block_the_listener(monkeypatch):
    monkeypatch.setattr(connection, "CONNECTION_TIMEOUT", 0.2)
    with Listener(authkey=b"k") as listener, socket.socket(socket.AF_UNIX) as raw:
        raw.connect(listener.address)
        with pytest.raises(AuthenticationError, match="did not answer"):
            listener.accept()


def test_unauthenticated_listener_and_client_in_process():
    with Listener() as listener:
        assert connection.address_type(listener.address) == connection.default_family
        with Client(listener.address) as c, listener.accept() as d:
            c.send(1729)
            assert d.recv() == 1729
            d.send_bytes(b"hello")
            assert c.poll(5)
            assert c.recv_bytes() == b"hello"
    with pytest.raises(OSError, match="listener is closed"):
        listener.accept()


def test_listener_unlinks_its_socket_file():
    listener = Listener(family="AF_UNIX")
    path = listener.address
    assert os.path.exists(path)
    assert path.startswith(multiprocess.util.get_temp_dir())
    listener.close()
    assert not os.path.exists(path)
    listener.close()
    assert listener.address == path  # still known after close


@pytest.mark.parametrize("family", FAMILIES)
def test_multiple_bind_fails_without_removing_the_first(family):
    with Listener(family=family) as first:
        with pytest.raises(OSError):
            Listener(first.address, family)
        if family == "AF_UNIX":
            assert os.path.exists(first.address)
        with Client(first.address) as c, first.accept() as d:
            c.send("still listening")
            assert d.recv() == "still listening"


@pytest.mark.skipif(not multiprocess.util.abstract_sockets_supported, reason="Linux only")
def test_abstract_socket():
    name = f"\0multiprocess-test-{os.getpid()}"
    with Listener(name) as listener, Client(listener.address) as c, listener.accept() as d:
        c.send("abstract")
        assert d.recv() == "abstract"


def test_listener_argument_errors():
    with pytest.raises(TypeError, match="authkey should be a byte string"):
        Listener(authkey="str")
    with pytest.raises(TypeError, match="authkey should be a byte string"):
        Client(("localhost", 1), authkey="str")
    with pytest.raises(ValueError, match="Family AF_PIPE is not recognized."):
        Listener(r"\\.\test")
    with pytest.raises(ValueError, match="not recognized"):
        Listener(family="AF_BOGUS")
    with pytest.raises(ValueError):
        connection.address_type(12)
    with pytest.raises(ValueError):
        connection.arbitrary_address("AF_BOGUS")
    assert connection.arbitrary_address("AF_INET") == ("localhost", 0)
    assert connection.address_type(("h", 1)) == "AF_INET"
    assert connection.address_type("/tmp/x") == "AF_UNIX"
    assert connection.address_type(b"\0abstract") == "AF_UNIX"


def test_sockets_are_blocking_under_a_default_timeout(ctx):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.05)
    try:
        a, b = ctx.Pipe()
        with Listener(family="AF_INET") as listener:
            c = Client(listener.address)
            d = listener.accept()
    finally:
        socket.setdefaulttimeout(old)
    for conn in (a, b, c, d):
        assert os.get_blocking(conn.fileno())
    p = start(ctx, h.echo_bytes, b)
    big = b"q" * (4 * 1024 * 1024)
    a.send_bytes(big)  # would fail with a timeout on a non-blocking fd
    assert a.recv_bytes() == big
    a.send_bytes(h.SENTINEL)
    join(p)
    for conn in (a, b, c, d):
        conn.close()


def test_xml_listener_and_client():
    with connection.XmlListener(authkey=b"k") as listener:
        t, result = _run_in_thread(listener.accept)
        client = connection.XmlClient(listener.address, authkey=b"k")
        t.join()
        server = result["value"]
        client.send({"a": [1, 2.5, "x"]})
        assert server.recv() == {"a": [1, 2.5, "x"]}
        server.send(["back"])
        assert client.poll(5)
        assert client.recv() == ["back"]
        client.close()
        server.close()


# -- authentication protocol ----------------------------------------------


class FakeConnection:
    def __init__(self, incoming):
        self.incoming = list(incoming)
        self.sent = []

    def recv_bytes(self, maxlength=None):
        return self.incoming.pop(0) if self.incoming else b""

    def send_bytes(self, data):
        self.sent.append(bytes(data))


def test_deliver_challenge_rejects_bogus_answer():
    fake = FakeConnection([b"something bogus"])
    with pytest.raises(AuthenticationError):
        connection.deliver_challenge(fake, b"abc")
    assert fake.sent[0].startswith(connection.CHALLENGE + b"{sha256}")
    assert len(fake.sent[0]) == len(connection.CHALLENGE) + 8 + connection.MESSAGE_LENGTH
    assert fake.sent[-1] == connection.FAILURE


def test_answer_challenge_rejects_bogus_challenge():
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(FakeConnection([connection.CHALLENGE]), b"abc")
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(FakeConnection([b"#NOPE#" + b"x" * 40]), b"abc")
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(
            FakeConnection([connection.CHALLENGE + b"{rot13}" + b"x" * 40]), b"abc"
        )
    with pytest.raises(ValueError):
        connection.answer_challenge(FakeConnection([]), "not bytes")


@pytest.mark.parametrize("algo", [None, "md5", "sha256"])
def test_verify_challenge_compat_hook(algo):
    # CPython 3.12+'s ChallengeResponseTest calls _create_response and
    # _verify_challenge(authkey, message, response) directly.
    authkey = b"supadupasecretkey"
    prefix = b"{%s}" % algo.encode() if algo else b""
    message = prefix + b"is-twenty-bytes-long"
    response = connection._create_response(authkey, message)
    assert response.startswith(prefix)
    assert connection._verify_challenge(authkey, message, response) is None
    with pytest.raises(AuthenticationError, match="digest received was wrong"):
        connection._verify_challenge(b"another key", message, response)


def test_answer_formats():
    import hashlib
    import hmac

    key = b"key"
    legacy = os.urandom(20)
    fake = FakeConnection([connection.CHALLENGE + legacy, connection.WELCOME])
    connection.answer_challenge(fake, key)
    assert fake.sent == [hmac.new(key, legacy, "md5").digest()]

    modern = b"{sha384}" + os.urandom(40)
    fake = FakeConnection([connection.CHALLENGE + modern, connection.WELCOME])
    connection.answer_challenge(fake, key)
    assert fake.sent == [b"{sha384}" + hmac.new(key, modern, hashlib.sha384).digest()]


@pytest.mark.parametrize("digest", ["sha256", "sha3_384"])
def test_deliver_accepts_modern_and_legacy_answers(digest):
    import hmac

    key = b"key"
    for legacy in (False, True):

        class Answering(FakeConnection):
            def recv_bytes(self, maxlength=None, legacy=legacy):
                message = self.sent[-1][len(connection.CHALLENGE) :]
                if legacy:
                    return hmac.new(key, message, "md5").digest()
                mac = hmac.new(key, message, digest).digest()
                return b"{%s}%s" % (digest.encode(), mac)

        fake = Answering([])
        connection.deliver_challenge(fake, key, digest_name=digest)
        assert fake.sent[-1] == connection.WELCOME


def _run_in_thread(fn, *args):
    result = {}

    def target():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, result


@pytest.mark.parametrize("server_is_stdlib", [True, False], ids=["stdlib-server", "our-server"])
def test_handshake_interoperates_with_stdlib(server_is_stdlib):
    """Python 3.11's stdlib speaks the legacy HMAC-MD5 protocol; newer ones the modern one."""
    import multiprocessing.connection as std

    server_mod, client_mod = (std, connection) if server_is_stdlib else (connection, std)
    with server_mod.Listener(authkey=b"shared") as listener:
        t, result = _run_in_thread(listener.accept)
        with client_mod.Client(listener.address, authkey=b"shared") as c:
            t.join()
            assert "error" not in result, result
            with result["value"] as d:
                c.send("across")
                assert d.recv() == "across"

        t, result = _run_in_thread(listener.accept)
        with pytest.raises(client_mod.AuthenticationError):
            client_mod.Client(listener.address, authkey=b"other")
        t.join()
        assert isinstance(result.get("error"), server_mod.AuthenticationError)


# -- wait -------------------------------------------------------------------


def test_wait_on_connections_from_children(ctx):
    readers, procs = [], []
    for i in range(4):
        r, w = ctx.Pipe(duplex=False)
        procs.append(start(ctx, h.send_sequence, w, [(i, j) for j in range(10)]))
        w.close()
        readers.append(r)
    messages = []
    while readers:
        ready = wait(readers, timeout=60)
        assert ready, "wait() timed out"
        assert all(r in readers for r in ready)
        for r in ready:
            try:
                messages.append(r.recv())
            except EOFError:
                readers.remove(r)
                r.close()
    assert sorted(messages) == [(i, j) for i in range(4) for j in range(10)]
    for p in procs:
        join(p)


def test_wait_on_sentinels_and_mixed_objects(ctx):
    go_r, go_w = ctx.Pipe(duplex=False)
    a, b = Pipe()
    p = start(ctx, h.send_bytes_after_go, go_r, b, b"x")
    assert wait([a, p.sentinel], timeout=0.1) == []
    go_w.send("go")
    p.join(60)
    # Under forkserver the sentinel is the server's status pipe: join() has
    # read the exit status, EOF follows when the server closes its end.
    assert wait([p.sentinel], timeout=30) == [p.sentinel]
    assert wait([a], timeout=30) == [a]
    ready = wait([p.sentinel, a, b], timeout=30)
    assert p.sentinel in ready and a in ready and b not in ready
    assert ready == [o for o in (p.sentinel, a, b) if o in ready]  # input order
    sock_a, sock_b = socket.socketpair()
    with sock_a, sock_b:
        sock_b.sendall(b"!")
        assert wait([sock_a, sock_b, b.fileno()], timeout=5) == [sock_a]
    for c in (a, b, go_r, go_w):
        c.close()


def test_wait_timeouts():
    a, b = Pipe()
    with a, b:
        t0 = time.monotonic()
        assert wait([a, b], timeout=0.3) == []
        assert time.monotonic() - t0 >= 0.29
        t0 = time.monotonic()
        assert wait([a], timeout=-1) == []
        assert wait([a], timeout=0) == []
        assert time.monotonic() - t0 < 1
        b.send(None)
        assert wait([a, b, a], timeout=20) == [a, a]  # duplicates are fine
        assert wait([], timeout=0) == []


# -- pickling connections ---------------------------------------------------


def test_connections_pickled_to_running_child(ctx):
    """A running child gets connections through a pipe: the resource sharer's job."""
    ctl, ctl_child = ctx.Pipe()
    p = start(ctx, h.use_received_connections, ctl_child)
    ctl_child.close()
    with ctl:
        r, w = ctx.Pipe(duplex=False)
        ctl.send(w)
        w.close()  # the child has its own duplicate now (or will fetch it)
        assert r.recv().startswith("hello via")

        r2, w2 = ctx.Pipe(duplex=False)
        ctl.send(r2)
        r2.close()
        w2.send({"payload": 1})
        assert ctl.recv() == ("read", {"payload": 1}, True, False)

        d1, d2 = ctx.Pipe()
        ctl.send(d2)
        d2.close()
        d1.send(["echo"])
        assert d1.recv() == ["echo"]
        d1.close()
        r.close()
        w2.close()
    join(p)


def test_connection_inside_a_closure_reaches_child(ctx):
    """A Connection captured by a lambda is pickled by dill, through the same reducer."""
    r, w = ctx.Pipe(duplex=False)
    ctl, ctl_child = ctx.Pipe()
    p = start(ctx, h.call_and_reply, ctl_child)
    ctl_child.close()
    with ctl:
        ctl.send((lambda msg: w.send(msg) or "sent", ("through a closure",)))
        assert ctl.recv() == "sent"
        assert r.recv() == "through a closure"
        ctl.send(None)
    join(p)
    r.close()
    w.close()


def test_connection_passed_as_process_argument(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, h.use_inherited_connection, w, "inherited")
    w.close()
    assert r.recv() == "inherited"
    join(p)
    r.close()


def test_pickle_connection_in_process_and_serializer_travels():
    a, b = Pipe(serializer="pickle")
    with a, b:
        data = multiprocess.reduction.get_serializer("dill").dumps(a)
        c = multiprocess.reduction.loads(data)
        with c:
            assert c.fileno() != a.fileno()
            assert c._serializer == "pickle"
            c.send("from the copy")
            assert b.recv() == "from the copy"


def test_resource_sharer_rejects_strangers_and_stops():
    r, w = Pipe(duplex=False)
    df = resource_sharer.DupFd(w.fileno())
    address, _key = df._id
    with pytest.raises(AuthenticationError):
        Client(address, authkey=b"not the process authkey")
    fd = df.detach()  # the sharer is still serving
    with Connection(fd, readable=False) as w2:
        w2.send("through the duplicate")
        assert r.recv() == "through the duplicate"

    df2 = resource_sharer.DupFd(w.fileno())
    server = resource_sharer._resource_sharer._server
    assert server is not None and server.thread.is_alive()
    resource_sharer.stop(timeout=30)
    assert not server.thread.is_alive()
    assert resource_sharer._resource_sharer._server is None
    with pytest.raises((OSError, EOFError)):
        df2.detach()  # the resource was released at stop
    # A new registration starts a new server.
    df3 = resource_sharer.DupFd(w.fileno())
    os.close(df3.detach())
    resource_sharer.stop(timeout=30)
    r.close()
    w.close()


def test_module_names():
    assert connection.__all__ == ["Client", "Listener", "Pipe", "wait"]
    for name in [
        "Connection",
        "BUFSIZE",
        "CONNECTION_TIMEOUT",
        "CHALLENGE",
        "WELCOME",
        "FAILURE",
        "MESSAGE_LENGTH",
        "default_family",
        "families",
        "address_type",
        "arbitrary_address",
        "deliver_challenge",
        "answer_challenge",
        "SocketListener",
        "SocketClient",
        "XmlListener",
        "XmlClient",
        "rebuild_connection",
        "reduce_connection",
        "AuthenticationError",
        "BufferTooShort",
    ]:
        assert hasattr(connection, name), name
    assert connection.AuthenticationError is multiprocess.AuthenticationError
    assert connection.BufferTooShort is multiprocess.BufferTooShort
    assert set(resource_sharer.__all__) == {"stop", "DupFd"}
