"""Managers: a server process that owns shared objects, and proxies to them (layer 5).

A manager starts a server process (or connects to one that is already running,
possibly on another machine) that owns ordinary Python objects: lists, dicts,
``queue.Queue``, ``threading.Lock``, instances of any registered callable.
Other processes hold *proxies*: each method call on a proxy becomes a request
to the server, which runs the method on the real object and sends back a copy
of the result::

    client process                                server process (Server)
    --------------                                -----------------------
    manager.list()  -- fresh connection -->       accepter thread: accept()
      create('list')                                 one thread per connection:
                    <-- (ident, exposed) --          HMAC challenge both ways,
                                                     then one request
    proxy.append(x) -- thread's own connection -->   serve_client(): a loop of
      (ident, 'append', (x,), {})                    recv -> id_to_obj[ident]
                    <-- ('#RETURN', None) --          -> method(*args) -> send
    del proxy       -- fresh connection -->          decref: refcount 0 drops
                                                     the object

Every connection passes the authkey challenge (``connection`` module) before the
server unpickles a byte from it: a peer with a wrong key gets
``AuthenticationError`` and the server goes on serving the others.  Each thread
of a client process keeps one connection per server (``BaseProxy._tls``) for
method calls, read with one system call per answer (``_RequestChannel``);
create, incref and decref use short-lived connections, because a decref may run
from a finalizer in the middle of another call of the thread.  A server
started with ``start()`` shuts itself down if the process that started it dies
without doing so; a proxy whose server is gone raises EOFError or
ConnectionError.

Serialization: the manager's ``serializer`` names how messages are pickled.
``'pickle'`` (the default, as in the standard library) means this package's
default serializer (``dill`` unless ``MULTIPROCESS_SERIALIZER`` says otherwise),
so shared dicts and lists can hold lambdas and instances of classes defined in
``__main__``; ``'dill'`` and ``'cloudpickle'`` name a serializer explicitly;
``'xmlrpclib'`` exchanges XML-RPC data (plain values only).  Whatever comes out
of the server is unpickled in the client, and the other way round: only connect
to managers you trust, with an authkey.

Reference counting: the server keeps an object while some process holds a
proxy to it.  A proxy takes a reference when it is made (or rebuilt from a
pickle, or inherited by a forked child) and gives it back when it is collected
or its process exits (``util.Finalize``); a proxy made by ``manager.list()``
and the like adopts the reference its creation took.  A proxy stored *inside* a shared
object lives in the server; it holds no reference ("manager owned"), and the
server keeps its referent for as long as the server runs.
"""

from __future__ import annotations

import array
import collections.abc
import errno
import math
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Iterable, Mapping, Sequence
from traceback import format_exc
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from . import connection, process, reduction, util
from . import context as _context
from ._errors import ProcessError
from ._spawning import get_spawning_popen

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BaseManager", "BaseProxy", "SharedMemoryManager", "SyncManager", "Token"]


#
# Identifying shared objects
#


class Token:
    """Names one shared object: its type id, its server's address and its id there."""

    __slots__ = ("address", "id", "typeid")

    def __init__(self, typeid: str, address: Any, id: str) -> None:
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self) -> tuple:
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state: tuple) -> None:
        self.typeid, self.address, self.id = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(typeid={self.typeid!r}, address={self.address!r}, id={self.id!r})"


#
# Talking to a server
#


def dispatch(c: Any, id: Any, methodname: str, args: Sequence[Any] = (), kwds: Mapping = {}) -> Any:
    """Send the request ``(id, methodname, args, kwds)`` on ``c`` and return the answer.

    Raises the error the server reports (see :func:`convert_to_error`).
    """
    c.send((id, methodname, args, kwds))
    kind, result = c.recv()
    if kind == "#RETURN":
        return result
    try:
        raise convert_to_error(kind, result)
    finally:
        del result  # the exception's traceback would keep this frame alive


def convert_to_error(kind: str, result: Any) -> BaseException:
    """Return the exception to raise for a reply of ``kind`` other than '#RETURN'."""
    if kind == "#ERROR":
        return result
    if kind in ("#TRACEBACK", "#UNSERIALIZABLE"):
        if not isinstance(result, str):
            raise TypeError(f"Result {result!r} (kind '{kind}') type is {type(result)}, not str")
        if kind == "#UNSERIALIZABLE":
            return RemoteError(f"Unserializable message: {result}\n")
        return RemoteError(result)
    return ValueError(f"Unrecognized message type {kind!r}")


class RemoteError(Exception):
    """An error in the manager's server process; ``args[0]`` is its traceback."""

    def __str__(self) -> str:
        return "\n" + "-" * 75 + "\n" + str(self.args[0]) + "-" * 75


class RemoteTraceback(Exception):
    """The server-side traceback of an exception raised by a shared object's method.

    It is the ``__cause__`` of the exception a proxy call raises, so that the
    server's traceback is printed with it.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class _ExceptionWithTraceback:
    """An exception raised in the server, pickled together with its traceback."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException) -> None:
        tb = exc.__traceback__
        # Skip the server's own frame (serve_client calling the method).
        text = "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb else None))
        self.exc = exc
        self.tb = f'\n"""\n{text}"""'

    def __reduce__(self) -> Any:
        return _rebuild_exception, (self.exc, self.tb)


def _rebuild_exception(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


#
# Finding the methods of an object
#


def all_methods(obj: Any) -> list:
    """Return the names of the callable attributes of ``obj``."""
    names = []
    for name in dir(obj):
        try:
            attr = getattr(obj, name)
        except Exception:  # noqa: BLE001 - an attribute that cannot be read is no method
            util.sub_debug("all_methods: cannot read %r of %r", name, type(obj))
        else:
            if callable(attr):
                names.append(name)
    return names


def public_methods(obj: Any) -> list:
    """Return the names of the callable attributes of ``obj`` not starting with '_'."""
    return [name for name in all_methods(obj) if name[0] != "_"]


#
# Serializer name -> Listener and Client
#


def _serializing(serializer: str | None) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A Listener and a Client factory whose connections use ``serializer``."""

    def Listener(
        address: Any = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
    ) -> connection.Listener:
        return connection.Listener(address, family, backlog, authkey, serializer=serializer)

    def Client(address: Any, family: str | None = None, authkey: bytes | None = None) -> Any:
        return connection.Client(address, family, authkey, serializer=serializer)

    return Listener, _explaining_missing_socket(Client)


def _explaining_missing_socket(client: Callable[..., Any]) -> Callable[..., Any]:
    # A server that shut down removed its unix socket file; connecting then
    # fails with FileNotFoundError, which does not say what happened.
    def Client(address: Any, family: str | None = None, authkey: bytes | None = None) -> Any:
        try:
            return client(address, family, authkey=authkey)
        except FileNotFoundError as error:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"no manager is listening at {address!r}: its server process has shut down or died",
            ) from error

    Client.__name__ = Client.__qualname__ = getattr(client, "__name__", "Client")
    return Client


def _xml_client(address: Any, family: str | None = None, authkey: bytes | None = None) -> Any:
    return connection.XmlClient(address, family, authkey)


#: Serializer name -> (Listener, Client).  'pickle' is this package's default
#: serializer ('dill' unless MULTIPROCESS_SERIALIZER says otherwise).
listener_client: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "pickle": _serializing(None),
    "dill": _serializing("dill"),
    "cloudpickle": _serializing("cloudpickle"),
    "xmlrpclib": (connection.XmlListener, _explaining_missing_socket(_xml_client)),
}


def _listener_client(serializer: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        return listener_client[serializer]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown manager serializer {serializer!r}; use one of "
            f"{', '.join(map(repr, listener_client))}"
        ) from None


def _call_server(
    client: Callable[..., Any],
    address: Any,
    authkey: bytes,
    name: str,
    args: Sequence[Any] = (),
    kwds: Mapping = {},  # never modified
) -> Any:
    """Call the server's method ``name`` over a connection of its own."""
    conn = client(address, authkey=authkey)
    try:
        return dispatch(_request_channel(conn), None, name, args, kwds)
    finally:
        conn.close()


class _RequestChannel:
    """A Connection used for strictly alternating requests and answers.

    ``Connection.recv()`` reads a message's 4-byte header, then its payload:
    two system calls, which cost more than the pickling of a small message.
    On a manager's connections the two sides take turns (a client sends one
    request and waits for its answer; the server answers and waits for the
    next request), so the peer has at most one message in flight, and one
    ``read()`` of up to 64 KiB takes in a whole small message (except with a
    peer of ours on a unix socket, which may send out-of-band frames: see
    ``multiprocess._conn_oob``; those are read by the connection).  Should a peer
    send ahead anyway, the bytes of its next message stay in ``_pending`` for
    the next ``recv()``: the framing is exactly the Connection's.  Like it, a
    length header is never trusted with memory: the rest of a long message is
    read in chunks as it arrives.

    Everything else (``send``, ``close``...) is the wrapped connection's.
    """

    __slots__ = ("_conn", "_fd", "_pending", "close", "control", "fileno", "send")

    _READ_SIZE = 65536

    def __init__(self, conn: connection.Connection) -> None:
        self._conn = conn
        self._fd = conn.fileno()
        self._pending = b""
        #: Whether the server serves create/incref/decref on this connection.
        self.control = False
        self.send = conn.send
        self.close = conn.close
        self.fileno = conn.fileno

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def poll(self, timeout: float | None = 0.0) -> bool:
        return bool(self._pending) or self._conn.poll(timeout)

    def recv(self) -> Any:
        """Receive one message and unpickle it (see ``Connection.recv``)."""
        if self._conn.closed:
            raise OSError("handle is closed")
        if self._conn._oob and not self._pending:
            # The peer is ours and may send out-of-band frames, whose
            # descriptors a read of 64 KiB would swallow: frame by frame.
            return self._conn.recv()
        data = self._read_message()
        try:
            return reduction.loads(data)
        except EOFError as e:
            raise pickle.UnpicklingError(
                f"message of {len(data)} bytes is not a complete pickle"
            ) from e

    def _read_at_least(self, buf: bytes, size: int) -> bytes:
        while len(buf) < size:
            chunk = os.read(self._fd, self._READ_SIZE)
            if not chunk:
                if buf:
                    raise connection._TruncatedMessageError("got end of file during message")
                raise EOFError
            buf += chunk
        return buf

    def _read_message(self) -> bytes | memoryview:
        buf = self._read_at_least(self._pending, 4)
        (size,) = _HEADER.unpack_from(buf)
        start = 4
        if size < 0:
            if size != -1:
                self._bad_length()
            buf = self._read_at_least(buf, 12)
            (size,) = _LONG_HEADER.unpack_from(buf, 4)
            start = 12
            if size > sys.maxsize:
                self._bad_length()
        end = start + size
        if len(buf) >= end:
            self._pending = buf[end:]
            return memoryview(buf)[start:end]
        # A long message: read exactly its rest, as it comes.
        self._pending = b""
        parts = [buf[start:]]
        missing = end - len(buf)
        while missing:
            chunk = os.read(self._fd, min(missing, connection._READ_CHUNK))
            if not chunk:
                raise connection._TruncatedMessageError("got end of file during message")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _bad_length(self) -> None:
        # The rest of the stream cannot be framed: nothing more can be read.
        self._conn.close()
        raise OSError("bad message length")


def _request_channel(conn: Any) -> Any:
    """``conn`` as a :class:`_RequestChannel` if it is a plain Connection."""
    if type(conn) is connection.Connection:
        return _RequestChannel(conn)
    return conn  # an XML-RPC connection: its recv() is its own


_HEADER = connection._HEADER
_LONG_HEADER = connection._LONG_HEADER

# Names the standard library's module has; kept for code that uses them.
#: Shared memory (SharedMemoryManager) is available.
HAS_SHMEM = True


def reduce_array(a: array.array) -> tuple:
    """Reduce an ``array.array`` to its type code and bytes."""
    return array.array, (a.typecode, a.tobytes())


def rebuild_as_list(obj: Any) -> tuple:
    """Reduce an iterable (a dict view) to the list of its items."""
    return list, (list(obj),)


# dict views cannot cross a process boundary with pickle; like the standard
# library, a method returning one (dict.keys()...) answers with a list.
_VIEW_TYPES = frozenset(type(getattr({}, name)()) for name in ("items", "keys", "values"))

# accept_connection's answer from a server that also serves create, incref and
# decref on proxy connections.
_CONTROL_ON_PROXY_CONNECTIONS = "control"

# What a client process that exits normally sends on each of its proxy
# connections (no answer): the locks it still holds stay held, as they would
# under the standard library.  A connection that ends without it belongs to a
# client that was killed or crashed: the server releases what it held.
_EXITING = "#EXITING"

# What Server methods return when they have answered the client themselves.
_ANSWERED = object()


#
# Locks held by the clients of a server
#

# Server-side objects whose acquisitions a dead client must not keep.
_HOLDABLE_TYPES: tuple[type, ...] = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Semaphore,  # BoundedSemaphore too
    threading.Condition,  # its lock
)


# Server-side objects whose ``wait`` a dead client must not keep waiting.
_WAITABLE_TYPES: tuple[type, ...] = (threading.Condition, threading.Event)


class _Holdings:
    """Which proxy connections hold which locks and semaphores of a server.

    Each served connection is one client thread.  When one acquires a lock,
    an RLock, a semaphore or a condition's lock through a proxy, the object
    records the connection as a holder; a release by a holder removes its own
    entry, a release by anyone else (allowed for a Lock or a Semaphore) the
    oldest entry.  A release that finds no holder is a credit that the next
    acquisition uses up without becoming a holder: a semaphore used as a
    signal (released by producers, acquired by consumers) has no holders.
    When a connection ends without its client process saying that it exits
    normally (it was killed, crashed, or left through ``os._exit``; or only
    the client thread ended), the thread that served it releases what it
    still holds, so that nobody waits for a dead client forever.  A process
    that exits normally leaves its locks held, as the standard library does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id(obj) -> [obj, credit, holders (one entry per acquisition)]
        self._ledger: dict[int, list] = {}

    def note(self, obj: Any, methodname: str, result: Any, holder: object) -> None:
        """Record a successful ``acquire`` or ``release`` of ``obj`` by ``holder``."""
        if methodname == "acquire":
            if not result:
                return
            with self._lock:
                entry = self._ledger.setdefault(id(obj), [obj, 0, []])
                if entry[1]:
                    entry[1] -= 1
                else:
                    entry[2].append(holder)
        elif methodname == "release":
            with self._lock:
                entry = self._ledger.setdefault(id(obj), [obj, 0, []])
                holders = entry[2]
                if holder in holders:
                    del holders[len(holders) - 1 - holders[::-1].index(holder)]
                elif holders:
                    del holders[0]
                else:
                    entry[1] += 1
                if not holders and not entry[1]:
                    del self._ledger[id(obj)]

    def forget(self, holder: object) -> None:
        """``holder`` is gone for good, leaving what it holds held (a normal exit)."""
        # Its entries stay: a release by another client still cancels them.

    def release_all(self, holder: object) -> None:
        """Release what ``holder`` still holds (call it from the thread that served it)."""
        with self._lock:
            owed = []
            for key, (obj, credit, holders) in list(self._ledger.items()):
                count = holders.count(holder)
                if count:
                    holders[:] = [h for h in holders if h is not holder]
                    owed.append((obj, count))
                    if not holders and not credit:
                        del self._ledger[key]
        for obj, count in owed:
            util.info("releasing %r, held %d time(s) by a client that went away", obj, count)
            for _ in range(count):
                try:
                    obj.release()
                except (RuntimeError, ValueError):
                    break  # released meanwhile some way we did not see


#
# Waits served for a client that may die meanwhile
#

# How often a server thread that waits on a client's behalf (Condition.wait,
# Event.wait) checks that the client is still there.
_CLIENT_CHECK_INTERVAL = 0.2


class _ClientGone(Exception):
    """The client of a proxy connection hung up while the server waited for it."""


def _client_gone(conn: Any) -> bool:
    """True if the peer of ``conn`` has hung up.

    A client sends nothing while it waits for an answer, so a readable
    connection is one at end of file, unless the client sent ahead: peek.
    """
    if not conn.poll(0):
        return False
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    except OSError:  # not a socket: no way to tell
        return False


def _wait_while_client_lives(obj: Any, conn: Any, args: Sequence[Any], kwds: Mapping) -> Any:
    """``obj.wait(timeout)`` (a Condition or an Event) in steps, while the client lives.

    Between two steps a Condition's lock stays held, so no notify falls in a
    gap.  Raises _ClientGone (holding a Condition's lock, as ``wait`` does)
    when the client has hung up.
    """
    timeout = kwds.get("timeout", args[0] if args else None)
    if len(args) + len(kwds) > 1 or (kwds and "timeout" not in kwds):
        return obj.wait(*args, **kwds)  # whatever wait() says about that
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or not math.isfinite(timeout)
    ):
        return obj.wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = _CLIENT_CHECK_INTERVAL
        if deadline is not None:
            step = max(0.0, min(step, deadline - time.monotonic()))
        if obj.wait(step):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if _client_gone(conn):
            raise _ClientGone


#
# The server
#


class Server:
    """Serves the shared objects of a manager; runs in the manager's server process.

    Each accepted connection gets a daemon thread, which runs the authkey
    challenge, then one request: a call of a method in ``public``.
    ``accept_connection`` turns the connection into a proxy connection served
    by :meth:`serve_client` until the client hangs up.

    What peers that never authenticate can hold is bounded: a connection has
    ``handshake_timeout`` seconds to complete the whole challenge (else it is
    closed and its thread ends), and at most ``max_unauthenticated``
    connections are in their handshake at once.  When that many are, the
    next connection waits in the listen backlog, and the handshake that has
    stalled longest (over a second, or half the deadline) is dropped to make
    room: a flood of silent peers delays a legitimate client by about that
    much.  Subclass to change them (``BaseManager._Server``).
    """

    #: Seconds a new connection has to complete the authentication handshake.
    handshake_timeout: ClassVar[float] = connection.CONNECTION_TIMEOUT
    #: Most connections in their handshake at once.
    max_unauthenticated: ClassVar[int] = 32

    public: ClassVar[list[str]] = [
        "shutdown",
        "create",
        "accept_connection",
        "get_methods",
        "debug_info",
        "number_of_objects",
        "dummy",
        "incref",
        "decref",
    ]

    def __init__(self, registry: dict, address: Any, authkey: bytes, serializer: str) -> None:
        if not isinstance(authkey, bytes):
            raise TypeError(f"Authkey {authkey!r} is type {type(authkey)!s}, not bytes")
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        Listener, _ = _listener_client(serializer)
        # No authkey here: each connection is challenged in its own thread, so
        # that a slow or hostile peer cannot hold up accept().
        self.listener = Listener(address=address, backlog=128)
        self.address = self.listener.address
        self.id_to_obj: dict = {"0": (None, ())}
        self.id_to_refcount: dict = {}
        self.id_to_local_proxy_obj: dict = {}
        self.mutex = threading.Lock()
        self.stop_event = threading.Event()
        self._holdings = _Holdings()
        self._handshake_slots = threading.BoundedSemaphore(self.max_unauthenticated)
        # Connections in their handshake, oldest first: key -> (conn, start time).
        self._handshakes: dict[object, tuple[Any, float]] = {}
        self._handshakes_lock = threading.Lock()

    # -- running --

    def serve_forever(self) -> None:
        """Serve until ``shutdown`` is requested (or KeyboardInterrupt), then exit."""
        process.current_process()._manager_server = self  # type: ignore[attr-defined]
        try:
            accepter = threading.Thread(target=self.accepter, name="manager-accepter", daemon=True)
            accepter.start()
            try:
                self.stop_event.wait()
            except (KeyboardInterrupt, SystemExit):
                pass
        finally:
            self.stop_event.set()
            if sys.stdout != sys.__stdout__:
                util.debug("resetting stdout, stderr")
                sys.stdout = sys.__stdout__
                sys.stderr = sys.__stderr__
            sys.exit(0)

    def accepter(self) -> None:
        """Accept connections and start a thread for each."""
        slots = self._handshake_slots
        while not self.stop_event.is_set():
            if not slots.acquire(False):
                # As many handshakes as allowed are under way: drop the one
                # that has stalled longest, or wait for one to end (each ends
                # within handshake_timeout).
                self._drop_a_stalled_handshake()
                if not slots.acquire(timeout=0.1):
                    continue
            try:
                c = self.listener.accept()
            except OSError as e:
                slots.release()
                if self.stop_event.is_set() or e.errno in (None, errno.EBADF, errno.EINVAL):
                    return  # stopping, or the listener was closed
                # Out of file descriptors, or a peer that left before we
                # accepted it: go on (after a pause, in case it persists).
                util.info("manager failed to accept a connection: %r", e)
                time.sleep(0.05)
                continue
            key = object()
            with self._handshakes_lock:
                self._handshakes[key] = (c, time.monotonic())
            try:
                t = threading.Thread(
                    target=self.handle_request, args=(c, (slots, key)), daemon=True
                )
                t.start()
            except BaseException:
                self._handshake_over((slots, key))
                c.close()
                raise

    def _drop_a_stalled_handshake(self) -> None:
        # A handshake takes milliseconds: one older than a fraction of the
        # deadline belongs to a peer that stalls.  Shutting its socket down
        # (not closing it: its thread still uses the descriptor) ends its
        # thread's read at once.
        patience = min(1.0, self.handshake_timeout / 2)
        with self._handshakes_lock:
            for key, (conn, started) in self._handshakes.items():
                if time.monotonic() - started < patience:
                    return
                del self._handshakes[key]
                break
            else:
                return
        try:
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by its thread
        util.info("manager dropped a connection that stalled in its handshake")

    def _handshake_over(self, handshake: Any) -> None:
        slots, key = handshake
        with self._handshakes_lock:
            self._handshakes.pop(key, None)
        slots.release()

    def handle_request(self, conn: Any, handshake: Any = None) -> None:
        """Authenticate a new connection and serve its request.

        ``handshake`` (from the accepter) is released once the handshake is over.
        """
        try:
            self._handle_request(conn, handshake)
        except SystemExit:
            pass
        finally:
            conn.close()

    def _handle_request(self, c: Any, handshake: Any = None) -> None:
        try:
            connection._serve_handshake(c, self.authkey, self.handshake_timeout)
        except Exception as e:  # noqa: BLE001 - whatever the peer did, drop it
            # Nothing from this peer has been unpickled: the challenge reads
            # raw bytes of bounded length.
            util.info("manager rejected a connection: %r", e)
            return
        finally:
            if handshake is not None:
                self._handshake_over(handshake)
        request = None
        try:
            request = c.recv()
            _ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise ValueError(f"{funcname!r} unrecognized")
            func = getattr(self, funcname)
        except Exception:  # noqa: BLE001 - reported to the client
            msg = ("#TRACEBACK", format_exc())
        else:
            try:
                result = func(c, *args, **kwds)
            except Exception:  # noqa: BLE001 - reported to the client
                msg = ("#TRACEBACK", format_exc())
            else:
                if result is _ANSWERED:
                    return
                msg = ("#RETURN", result)
        try:
            c.send(msg)
        except Exception as e:  # noqa: BLE001 - the client may be gone
            try:
                c.send(("#TRACEBACK", format_exc()))
            except Exception:  # noqa: BLE001
                util.debug("could not report the failure to the client either")
            util.info("Failure to send message: %r", msg)
            util.info(" ... request was %r", request)
            util.info(" ... exception was %r", e)

    def serve_client(self, conn: Any) -> None:
        """Serve the method calls of the proxies of one client thread until it hangs up.

        Then, unless the client process said that it exits normally, release
        the locks and semaphores that this client thread still holds (see
        :class:`_Holdings`).
        """
        util.debug("starting server thread to service %r", threading.current_thread().name)
        holder = object()
        exited = [False]  # set when the client process says it exits normally
        try:
            self._serve_client(conn, holder, exited)
        finally:
            if exited[0]:
                self._holdings.forget(holder)
            else:
                self._holdings.release_all(holder)

    def _serve_client(self, conn: Any, holder: object, exited: list) -> None:
        conn = _request_channel(conn)
        recv = conn.recv
        send = conn.send
        id_to_obj = self.id_to_obj
        is_stopping = self.stop_event.is_set
        note_holding = self._holdings.note

        while not is_stopping():
            methodname = obj = None
            try:
                request = recv()
            except (EOFError, OSError):
                util.debug("got EOF -- exiting thread serving %r", threading.current_thread().name)
                return
            except Exception:  # noqa: BLE001 - an unloadable request; the stream is intact
                msg: tuple = ("#TRACEBACK", format_exc())
            else:
                try:
                    ident, methodname, args, kwds = request
                    if ident is None and methodname == _EXITING:
                        exited[0] = True
                        continue
                    if ident is None:
                        msg = self._control_request(conn, methodname, args, kwds)
                    else:
                        try:
                            obj, exposed, gettypeid = id_to_obj[ident]
                        except KeyError:
                            obj, exposed, gettypeid = self._local_proxy_referent(ident)
                        if methodname not in exposed:
                            raise AttributeError(
                                f"method {methodname!r} of {type(obj)!r} object is not in "
                                f"exposed={exposed!r}"
                            )
                        function = getattr(obj, methodname)
                        try:
                            if methodname == "wait" and isinstance(obj, _WAITABLE_TYPES):
                                res = _wait_while_client_lives(obj, conn, args, kwds)
                            else:
                                res = function(*args, **kwds)
                        except _ClientGone:
                            util.debug("client gone while waiting; ending its thread")
                            return
                        except Exception as e:  # noqa: BLE001 - the caller gets it
                            msg = ("#ERROR", _ExceptionWithTraceback(e))
                        else:
                            if methodname in ("acquire", "release") and isinstance(
                                obj, _HOLDABLE_TYPES
                            ):
                                note_holding(obj, methodname, res, holder)
                            elif (
                                res is True
                                and methodname == "wait"
                                and isinstance(obj, threading.Condition)
                                and _client_gone(conn)
                            ):
                                # Notified, but nobody is left to take it: pass
                                # the wake-up on to another waiter (the lock is
                                # held, as after any wait).
                                obj.notify()
                                return
                            typeid = gettypeid and gettypeid.get(methodname, None)
                            if typeid:
                                rident, rexposed = self.create(conn, typeid, res)
                                msg = ("#PROXY", (rexposed, Token(typeid, self.address, rident)))
                            elif type(res) in _VIEW_TYPES:
                                msg = ("#RETURN", list(res))
                            else:
                                msg = ("#RETURN", res)
                except AttributeError:
                    fallback = self.fallback_mapping.get(methodname)  # type: ignore[arg-type]
                    if fallback is None:
                        msg = ("#TRACEBACK", format_exc())
                    else:
                        try:
                            msg = ("#RETURN", fallback(self, conn, ident, obj, *args, **kwds))
                        except Exception:  # noqa: BLE001
                            msg = ("#TRACEBACK", format_exc())
                except Exception:  # noqa: BLE001
                    msg = ("#TRACEBACK", format_exc())
            try:
                try:
                    send(msg)
                except Exception:  # noqa: BLE001 - the result could not be pickled
                    send(("#UNSERIALIZABLE", format_exc()))
            except Exception as e:  # noqa: BLE001 - the client is gone
                util.info("exception in thread serving %r", threading.current_thread().name)
                util.info(" ... message was %r", msg)
                util.info(" ... exception was %r", e)
                conn.close()
                return
            del msg

    def _control_request(self, conn: Any, name: str, args: Sequence[Any], kwds: Mapping) -> tuple:
        # A call of a server method (create, incref...) on a proxy connection.
        try:
            if name not in self.public or name in ("accept_connection", "shutdown"):
                raise ValueError(f"{name!r} unrecognized on a proxy connection")
            return ("#RETURN", getattr(self, name)(conn, *args, **kwds))
        except Exception:  # noqa: BLE001 - reported to the client
            return ("#TRACEBACK", format_exc())

    def _local_proxy_referent(self, ident: str) -> tuple:
        try:
            return self.id_to_local_proxy_obj[ident]
        except KeyError:
            raise KeyError(
                f"no shared object with id {ident!r}: every proxy to it was released, "
                "so the manager dropped it"
            ) from None

    def fallback_getvalue(self, conn: Any, ident: str, obj: Any) -> Any:
        return obj

    def fallback_str(self, conn: Any, ident: str, obj: Any) -> str:
        return str(obj)

    def fallback_repr(self, conn: Any, ident: str, obj: Any) -> str:
        return repr(obj)

    fallback_mapping: ClassVar[dict[str, Callable[..., Any]]] = {
        "__str__": fallback_str,
        "__repr__": fallback_repr,
        "#GETVALUE": fallback_getvalue,
    }

    # -- the public methods: the first argument is the client's connection --

    def dummy(self, c: Any) -> None:
        pass

    def debug_info(self, c: Any) -> str:
        """Return a description of the shared objects and their reference counts."""
        with self.mutex:
            entries = [
                (ident, count, self.id_to_obj.get(ident, (None,))[0])
                for ident, count in sorted(self.id_to_refcount.items())
                if ident != "0"
            ]
        # Formatted outside the lock: str() may call back into this server.
        return "\n".join(
            f"  {ident}:       refcount={count}\n    {str(obj)[:75]}"
            for ident, count, obj in entries
        )

    def number_of_objects(self, c: Any) -> int:
        """Return the number of shared objects that proxies refer to."""
        return len(self.id_to_refcount)

    def shutdown(self, c: Any) -> Any:
        """Answer, then stop serving (the server process then exits)."""
        try:
            util.debug("manager received shutdown message")
            c.send(("#RETURN", None))
        except Exception:  # noqa: BLE001 - stop anyway
            traceback.print_exc()
        finally:
            self.stop_event.set()
        return _ANSWERED

    def create(self, c: Any, typeid: str, /, *args: Any, **kwds: Any) -> tuple:
        """Create a shared object of type ``typeid``; return its id and exposed methods.

        The caller holds one reference to it.
        """
        callable, exposed, method_to_typeid, _proxytype = self.registry[typeid]
        if callable is None:
            if kwds or len(args) != 1:
                raise ValueError("Without callable, must have one non-keyword argument")
            obj = args[0]
        else:
            # Outside the mutex: a slow constructor (a Pool) must not block
            # every other client.
            obj = callable(*args, **kwds)
        if exposed is None:
            exposed = public_methods(obj)
        if method_to_typeid is not None:
            if not isinstance(method_to_typeid, dict):
                raise TypeError(
                    f"Method_to_typeid {method_to_typeid!r}: type {type(method_to_typeid)!s}, "
                    "not dict"
                )
            exposed = list(exposed) + list(method_to_typeid)
        ident = f"{id(obj):x}"  # a string: xmlrpc has only 32-bit integers
        util.debug("%r callable returned object with id %r", typeid, ident)
        with self.mutex:
            self.id_to_obj[ident] = (obj, set(exposed), method_to_typeid)
            self.id_to_refcount[ident] = self.id_to_refcount.get(ident, 0) + 1
        return ident, tuple(exposed)

    def get_methods(self, c: Any, token: Token) -> tuple:
        """Return the exposed methods of the object ``token`` names."""
        return tuple(self.id_to_obj[token.id][1])

    def accept_connection(self, c: Any, name: str) -> Any:
        """Make ``c`` the connection of the client thread ``name`` and serve it."""
        threading.current_thread().name = name
        # The answer says that server methods can be called on this
        # connection too; the standard library's server answers None.
        c.send(("#RETURN", _CONTROL_ON_PROXY_CONNECTIONS))
        self.serve_client(c)
        return _ANSWERED

    def incref(self, c: Any, ident: str) -> None:
        """Count one more reference to the object ``ident``."""
        with self.mutex:
            count = self.id_to_refcount.get(ident)
            if count is not None:
                self.id_to_refcount[ident] = count + 1
            elif ident in self.id_to_local_proxy_obj:
                # No client holds it any more, but a proxy stored inside
                # another shared object does: track it again.
                self.id_to_refcount[ident] = 1
                self.id_to_obj[ident] = self.id_to_local_proxy_obj[ident]
                util.debug("Server re-enabled tracking & INCREF %r", ident)
            else:
                raise KeyError(
                    f"no shared object with id {ident!r}: every proxy to it was released, "
                    "so the manager dropped it (keep a proxy alive until others hold theirs)"
                )

    def decref(self, c: Any, ident: str) -> None:
        """Count one reference less to ``ident``; at zero, drop the object."""
        with self.mutex:
            count = self.id_to_refcount.get(ident)
            if count is None:
                if ident in self.id_to_local_proxy_obj:
                    util.debug("Server DECREF skipping %r", ident)
                    return
                raise KeyError(f"no shared object with id {ident!r}")
            if count <= 0:
                raise ValueError(
                    f"Id {ident!s} ({self.id_to_obj[ident]!r}) has refcount {count:n}, not 1+"
                )
            if count > 1:
                self.id_to_refcount[ident] = count - 1
                return
            del self.id_to_refcount[ident]
            entry = self.id_to_obj.pop(ident, None)
        # The object dies here, outside the mutex: it may hold proxies whose
        # finalizers call back into this server (a list of lists).
        util.debug("disposing of obj with id %r", ident)
        del entry

    def _remember_local_proxy(self, ident: str) -> None:
        # A proxy to one of our objects is being rebuilt inside this process
        # (stored in another shared object): keep its referent for it.
        with self.mutex:
            if ident not in self.id_to_local_proxy_obj:
                entry = self.id_to_obj.get(ident)
                if entry is not None:
                    self.id_to_local_proxy_obj[ident] = entry


#
# The state of a manager
#


class State:
    """Where a manager is in its life: INITIAL, STARTED or SHUTDOWN."""

    __slots__ = ["value"]
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self) -> None:
        self.value = State.INITIAL


def _stop_with_parent(server: Server, parent_sentinel: int) -> None:
    # The process that started the server owns it and shuts it down when it
    # exits.  If it dies without doing so (killed, os._exit), stop serving
    # rather than live on as an orphan nobody will ever shut down.
    connection.wait([parent_sentinel])
    if not server.stop_event.is_set():
        util.info("the process that started this manager is gone: shutting down")
        server.stop_event.set()


class _ServerStartFailure:
    """Sent instead of the address by a server process that could not start."""

    def __init__(self, exc: BaseException) -> None:
        # Unpickled, this attribute is the exception, its traceback attached.
        self.exc: Any = _ExceptionWithTraceback(exc)


def _state_error(state: State, what: str = "server") -> ProcessError:
    if state.value == State.STARTED:
        return ProcessError(f"Already started {what}")
    if state.value == State.SHUTDOWN:
        return ProcessError("Manager has shut down")
    return ProcessError(f"Unknown state {state.value!r}")


#
# Managers
#

# Manager classes that registered types, for proxies that lost their manager
# (in a child process) and must find the proxy type of a method's result.
_manager_classes: weakref.WeakSet = weakref.WeakSet()


class BaseManager:
    """A manager: starts (or connects to) a server process that owns shared objects.

    Args:
        address: Where the server listens: a unix socket path, or a
            ``(host, port)`` pair for TCP (port 0: any free port).  None
            picks a fresh unix socket.  For ``connect()``: where to find it.
        authkey: The secret (bytes) every connection must prove it knows.
            Default: this process's ``current_process().authkey``, which its
            children inherit.
        serializer: 'pickle' (this package's default serializer: dill unless
            ``MULTIPROCESS_SERIALIZER`` says otherwise), 'dill',
            'cloudpickle', or 'xmlrpclib' (plain values only).
        ctx: The context whose ``Process`` starts the server process; by
            default the package's, resolved when ``start()`` is called.
        shutdown_timeout: Seconds ``shutdown()`` waits for the server process
            to exit before it terminates it, and again before it kills it.

    Register shared types on a subclass with :meth:`register`, which also adds
    a method of that name that creates an object and returns a proxy to it.
    """

    _registry: ClassVar[dict] = {}
    _Server: ClassVar[type[Server]] = Server

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if authkey is None:
            authkey = process.current_process().authkey
        self._address = address
        self._authkey = process.AuthenticationString(authkey)
        self._state = State()
        self._state.value = State.INITIAL
        self._serializer = serializer
        self._Listener, self._Client = _listener_client(serializer)
        if serializer in ("dill", "cloudpickle"):
            reduction.get_serializer(serializer)  # ImportError now, not at the first call
        self._ctx = ctx if ctx is not None else _context._default_context
        self._shutdown_timeout = shutdown_timeout
        self._process: Any = None

    def get_server(self) -> Server:
        """Return a server for this manager's registry, to run with ``serve_forever()``.

        Use it to serve shared objects from this process (for clients that
        ``connect()``) instead of starting a server process.
        """
        if self._state.value != State.INITIAL:
            raise _state_error(self._state)
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self) -> None:
        """Connect to a server already running at ``address``."""
        _call_server(self._Client, self._address, self._authkey, "dummy")
        self._state.value = State.STARTED

    def start(
        self, initializer: Callable[..., Any] | None = None, initargs: Iterable[Any] = ()
    ) -> None:
        """Start the server process; ``initializer(*initargs)`` runs there first.

        Raises:
            ProcessError: The manager was already started or shut down, or
                the server process died before it was ready.
            TypeError: ``initializer`` is not callable.
            Whatever the initializer or the server's set-up (binding the
            address) raised in the server process, with that traceback as
            ``__cause__``.
        """
        if self._state.value != State.INITIAL:
            raise _state_error(self._state)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")

        # The server process sends its address (or why it failed) back here.
        reader, writer = connection.Pipe(duplex=False)
        self._process = self._ctx.Process(
            target=type(self)._run_server,
            args=(
                self._registry,
                self._address,
                self._authkey,
                self._serializer,
                writer,
                initializer,
                initargs,
            ),
        )
        ident = ":".join(str(i) for i in self._process._identity)
        self._process.name = f"{type(self).__name__}-{ident}"
        self._process.start()
        writer.close()
        try:
            reply = reader.recv()
        except BaseException as error:
            # Interrupted (Ctrl-C) or the server died: leave no server behind,
            # or this process would wait for it at exit.
            self._stop_unready_server()
            if isinstance(error, EOFError):
                raise ProcessError(
                    f"the manager's server process exited before it was ready "
                    f"(exit code {self._process.exitcode})"
                ) from None
            raise
        finally:
            reader.close()
        if isinstance(reply, _ServerStartFailure):
            self._stop_unready_server()
            raise reply.exc
        self._address = reply
        self._state.value = State.STARTED
        self.shutdown = util.Finalize(  # type: ignore[method-assign]
            self,
            type(self)._finalize_manager,
            args=(
                self._process,
                self._address,
                self._authkey,
                self._state,
                self._Client,
                self._shutdown_timeout,
            ),
            exitpriority=0,
        )

    @classmethod
    def _run_server(
        cls,
        registry: dict,
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        """Create a server, report its address and serve (in the server process)."""
        # The server must outlive a Ctrl-C aimed at its parent's process group
        # (bpo-36368): the parent shuts it down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if initializer is not None:
                initializer(*initargs)
            server = cls._Server(registry, address, authkey, serializer)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            try:
                writer.send(_ServerStartFailure(exc))
            except Exception:  # noqa: BLE001 - the exception itself does not pickle
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                writer.send(_ServerStartFailure(ProcessError(text)))
            writer.close()
            sys.exit(1)
        writer.send(server.address)
        writer.close()
        parent_sentinel = getattr(process.parent_process(), "_sentinel", None)
        if parent_sentinel is not None:
            threading.Thread(
                target=_stop_with_parent,
                args=(server, parent_sentinel),
                name="manager-parent-watcher",
                daemon=True,
            ).start()
        util.info("manager serving at %r", server.address)
        server.serve_forever()

    def _stop_unready_server(self) -> None:
        process = self._process
        process.join(self._shutdown_timeout)
        if process.is_alive():
            process.terminate()
            process.join(self._shutdown_timeout)
            if process.is_alive():
                process.kill()
                process.join()

    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> tuple:
        """Create a shared object; return its token and exposed methods (one reference)."""
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                raise ProcessError("the manager is not started: call start() or connect() first")
            raise _state_error(self._state)
        # On this thread's connection, which the new proxy will most likely use
        # next (a creation never runs from a finalizer, unlike a decref).
        tls = _locals_for(self._address)[0]
        try:
            conn = tls.connection
        except AttributeError:
            conn = _connect_thread(tls, self._Client, self._address, self._authkey)
        request = ("create", (typeid, *args), kwds)
        if getattr(conn, "control", False):
            kind, result = _exchange(tls, conn, self._address, (None, *request))
            if kind != "#RETURN":
                raise convert_to_error(kind, result)
            id, exposed = result
        else:
            id, exposed = _call_server(self._Client, self._address, self._authkey, *request)
        return Token(typeid, self._address, id), exposed

    def join(self, timeout: float | None = None) -> None:
        """Wait for the server process to exit (if this manager started one)."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _debug_info(self) -> str:
        """Return a description of the server's shared objects (for debugging)."""
        return _call_server(self._Client, self._address, self._authkey, "debug_info")

    def _number_of_objects(self) -> int:
        """Return the number of shared objects that proxies refer to."""
        return _call_server(self._Client, self._address, self._authkey, "number_of_objects")

    def __enter__(self) -> Self:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                raise ProcessError("Unable to start server")
            raise _state_error(self._state)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the server process this manager started.

        Does nothing for a manager that was not started (or only connected to
        someone else's server).  ``start()`` replaces this with a finalizer
        that also runs when the manager is collected or the program exits.
        """

    @staticmethod
    def _finalize_manager(
        process: Any,
        address: Any,
        authkey: bytes,
        state: State,
        _Client: Callable[..., Any],
        shutdown_timeout: float,
    ) -> None:
        """Shut the server process down: ask, then terminate, then kill."""
        if process.is_alive():
            util.info("sending shutdown message to manager")
            try:
                _call_server(_Client, address, authkey, "shutdown")
            except Exception as e:  # noqa: BLE001 - it is stopped below in any case
                util.info("could not ask the manager to shut down: %r", e)
            process.join(timeout=shutdown_timeout)
            if process.is_alive():
                util.info("manager still alive")
                if hasattr(process, "terminate"):
                    util.info("trying to `terminate()` manager process")
                    process.terminate()
                    process.join(timeout=shutdown_timeout)
                    if process.is_alive():
                        util.info("manager still alive after terminate")
                        process.kill()
                        process.join()
        state.value = State.SHUTDOWN
        BaseProxy._address_to_local.pop(address, None)

    @property
    def address(self) -> Any:
        """The server's address (the real one once started)."""
        return self._address

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Callable[..., Any] | None = None,
        proxytype: Any = None,
        exposed: Sequence[str] | None = None,
        method_to_typeid: Mapping[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Register a type of shared object with this manager class.

        Args:
            typeid: The name of the type, and of the manager method that makes one.
            callable: What the server calls to make the object (None: the
                client passes the object; or, on a client that only
                ``connect()``\\ s, the server's registration is used).
            proxytype: The proxy class (default :func:`AutoProxy`, whose
                methods are whatever the server exposes).
            exposed: The method names proxies may call (default: the proxy
                type's ``_exposed_``, else the object's public methods).
            method_to_typeid: Methods whose results stay in the server and come
                back as proxies of the given type id.
            create_method: Add the method ``typeid`` to the manager class.
        """
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in list(method_to_typeid.items()):
                if type(key) is not str:
                    raise TypeError(f"{key!r} is not a string")
                if type(value) is not str:
                    raise TypeError(f"{value!r} is not a string")
        cls._registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
        _manager_classes.add(cls)
        if create_method:
            setattr(cls, typeid, _creation_method(cls, typeid, proxytype))


def _creation_method(cls: type, typeid: str, proxytype: Any) -> Callable[..., Any]:
    def create(self: BaseManager, /, *args: Any, **kwds: Any) -> Any:
        util.debug("requesting creation of a shared %r object", typeid)
        token, exposed = self._create(typeid, *args, **kwds)
        return _proxy_for_new_reference(
            proxytype, token, self._serializer, self, self._authkey, exposed
        )

    create.__name__ = typeid
    create.__qualname__ = f"{cls.__qualname__}.{typeid}"
    create.__doc__ = f"Create a shared {typeid!r} object in the server; return a proxy to it."
    return create


def _adopts_reference(proxytype: Any) -> bool:
    """Whether ``proxytype(..., incref=False)`` builds a proxy that can adopt a reference."""
    if proxytype is AutoProxy:
        return True
    return (
        isinstance(proxytype, type)
        and issubclass(proxytype, BaseProxy)
        and proxytype.__init__ is BaseProxy.__init__
    )


def _proxy_for_new_reference(
    proxytype: Any, token: Token, serializer: str, manager: Any, authkey: bytes, exposed: Any
) -> Any:
    """A proxy for an object the server just created with one reference for us."""
    if _adopts_reference(proxytype):
        # The proxy takes over the creation's reference: no incref/decref
        # round trips, two connections fewer per object.
        try:
            proxy = proxytype(
                token, serializer, manager=manager, authkey=authkey, exposed=exposed, incref=False
            )
        except BaseException:
            _release(token, serializer, authkey)
            raise
        proxy._adopt_reference()
        return proxy
    # A proxy type of its own making: it increfs itself, as in the standard
    # library; give the creation's reference back.
    try:
        return proxytype(token, serializer, manager=manager, authkey=authkey, exposed=exposed)
    finally:
        _release(token, serializer, authkey)


def _release(token: Token, serializer: str, authkey: bytes) -> None:
    _call_server(_listener_client(serializer)[1], token.address, authkey, "decref", (token.id,))


def _find_proxytype(typeid: str, manager: Any) -> Any:
    """The proxy type registered for ``typeid`` (AutoProxy if none is known here)."""
    if manager is not None:
        entry = manager._registry.get(typeid)
        if entry is not None:
            return entry[-1]
    # A proxy rebuilt in another process has no manager: look in every
    # manager class of this process, most derived first.
    for cls in sorted(_manager_classes, key=lambda c: -len(c.__mro__)):
        entry = cls._registry.get(typeid)
        if entry is not None:
            return entry[-1]
    return AutoProxy


#
# Proxies
#


class ProcessLocalSet(set):
    """A set that is emptied in a forked child."""

    def __init__(self) -> None:
        super().__init__()
        util.register_after_fork(self, lambda obj: obj.clear())

    def __reduce__(self) -> tuple:
        return type(self), ()


class BaseProxy:
    """A reference to a shared object in a manager's server.

    Subclasses call :meth:`_callmethod` to run a method of the referent in the
    server.  Pickling a proxy sends its token: the receiving process rebuilds
    a proxy to the same object (with the authkey only while a child process is
    being started; elsewhere the receiver uses its own process's authkey).

    Args:
        token: The shared object.
        serializer: The manager's serializer name.
        manager: The manager that made it, if it lives in this process.
        authkey: The server's authkey; default: the manager's, else this
            process's.
        exposed: Ignored (subclasses list their methods in ``_exposed_``).
        incref: Take a reference to the object now.
        manager_owned: The proxy lives in the server itself and holds no
            reference.
    """

    _address_to_local: ClassVar[dict] = {}
    _mutex = util.ForkAwareThreadLock()

    # Class defaults: a proxy without a reference of its own has no finalizer.
    _isauto = False
    _close: Any = None
    _pid: int | None = None

    def __init__(
        self,
        token: Token,
        serializer: str,
        manager: Any = None,
        authkey: bytes | None = None,
        exposed: Any = None,
        incref: bool = True,
        manager_owned: bool = False,
    ) -> None:
        tls_idset = _locals_for(token.address)

        # The connection each thread of this process uses for token.address.
        self._tls = tls_idset[0]
        # The ids of the objects at token.address this process holds references to.
        self._idset = tls_idset[1]

        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = _listener_client(serializer)[1]
        self._owned_by_manager = manager_owned

        self._authkey: bytes
        if authkey is not None:
            self._authkey = process.AuthenticationString(authkey)
        elif manager is not None:
            self._authkey = manager._authkey
        else:
            self._authkey = process.current_process().authkey

        if incref:
            self._incref()

        util.register_after_fork(self, BaseProxy._after_fork)

    # -- calling the referent --

    def _connect(self) -> None:
        _connect_thread(self._tls, self._Client, self._token.address, self._authkey)

    def _callmethod(self, methodname: str, args: Sequence[Any] = (), kwds: Mapping = {}) -> Any:
        """Call ``methodname(*args, **kwds)`` on the referent; return a copy of the result.

        Raises what the method raised (with the server's traceback as
        ``__cause__``), :class:`RemoteError` for errors of the server itself,
        and EOFError / ConnectionError when the server is gone.
        """
        tls = self._tls
        try:
            conn = tls.connection
        except AttributeError:
            conn = _connect_thread(tls, self._Client, self._token.address, self._authkey)
        kind, result = _exchange(tls, conn, self._token.address, (self._id, methodname, args, kwds))
        if kind == "#RETURN":
            return result
        if kind == "#PROXY":
            exposed, token = result
            proxytype = _find_proxytype(token.typeid, self._manager)
            token.address = self._token.address
            return _proxy_for_new_reference(
                proxytype, token, self._serializer, self._manager, self._authkey, exposed
            )
        try:
            raise convert_to_error(kind, result)
        finally:
            del result

    def _drop_connection(self, conn: Any) -> None:
        _drop_connection(self._tls, conn)

    def _getvalue(self) -> Any:
        """Return a copy of the referent."""
        return self._callmethod("#GETVALUE")

    # -- references --

    def _incref(self) -> None:
        if self._owned_by_manager:
            util.debug("owned_by_manager skipped INCREF of %r", self._token.id)
            return
        _control_call(
            self._tls, self._Client, self._token.address, self._authkey, "incref", (self._id,), True
        )
        util.debug("INCREF %r", self._token.id)
        self._adopt_reference()

    def _adopt_reference(self) -> None:
        """Make this proxy the holder of one reference of this process to its referent."""
        self._idset.add(self._id)
        self._pid = os.getpid()
        state = self._manager and self._manager._state
        self._close = util.Finalize(
            self,
            BaseProxy._decref,
            args=(self._token, self._authkey, state, self._tls, self._idset, self._Client),
            exitpriority=10,
        )

    @staticmethod
    def _decref(
        token: Token, authkey: bytes, state: Any, tls: Any, idset: set, _Client: Callable[..., Any]
    ) -> None:
        idset.discard(token.id)
        if state is None or state.value == State.STARTED:
            try:
                util.debug("DECREF %r", token.id)
                _control_call(tls, _Client, token.address, authkey, "decref", (token.id,), False)
            except Exception as e:  # noqa: BLE001 - the server may be gone
                util.debug("... decref failed %s", e)
        else:
            util.debug("DECREF %r -- manager already shutdown", token.id)
        # The thread's connection is not needed once this process holds no
        # more references to objects of this server.
        if not idset and hasattr(tls, "connection"):
            util.debug(
                "thread %r has no more proxies so closing conn", threading.current_thread().name
            )
            # Dropped, not closed: this may run from the garbage collector in
            # the middle of a call of this thread on that connection, which
            # then finishes; the connection closes when nothing uses it.
            del tls.connection

    def _after_fork(self) -> None:
        self._manager = None
        if self._owned_by_manager:
            return
        if self._pid == os.getpid():
            # It took its reference in this process, while the child was being
            # set up; only the finalizer was lost when the child started.
            if self._close is None or not self._close.still_active():
                self._adopt_reference()
            return
        # Inherited from the parent by fork: this process needs a reference.
        self._pid = None
        self._close = None
        try:
            self._incref()
        except Exception as e:  # noqa: BLE001 - the manager may have shut down
            util.info("incref failed: %s", e)

    # -- pickling and display --

    def __reduce__(self) -> tuple:
        kwds: dict = {}
        if get_spawning_popen() is not None:
            kwds["authkey"] = self._authkey
        if self._isauto:
            kwds["exposed"] = self._exposed_  # type: ignore[attr-defined]
            return RebuildProxy, (AutoProxy, self._token, self._serializer, kwds)
        return RebuildProxy, (type(self), self._token, self._serializer, kwds)

    def __deepcopy__(self, memo: dict) -> Any:
        return self._getvalue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._token.typeid!r} at {id(self):#x}>"

    def __str__(self) -> str:
        """The referent's ``str()``, computed in the server (or a fallback if that fails)."""
        try:
            return self._callmethod("__str__")
        except Exception:  # noqa: BLE001 - str() of a proxy must not raise
            return repr(self)[:-1] + "; '__str__()' failed>"


def _lost_server(error: BaseException, address: Any) -> BaseException | None:
    """The clearer error to raise for a connection failure, or None for other errors."""
    if isinstance(error, EOFError):
        lost: BaseException = EOFError(
            f"lost the connection to the manager at {address!r}: its server process has "
            "exited, been shut down or been killed"
        )
    elif isinstance(error, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        lost = type(error)(
            error.errno,
            f"lost the connection to the manager at {address!r}: its server process has "
            "exited, been shut down or been killed",
        )
    else:
        return None
    return lost


def _locals_for(address: Any) -> tuple:
    """(thread-local connections, ids referenced by this process) for the server at ``address``."""
    with BaseProxy._mutex:
        tls_idset = BaseProxy._address_to_local.get(address, None)
        if tls_idset is None:
            tls_idset = util.ForkAwareLocal(), ProcessLocalSet()
            BaseProxy._address_to_local[address] = tls_idset
    return tls_idset


def _connect_thread(tls: Any, client: Callable[..., Any], address: Any, authkey: bytes) -> Any:
    """Open this thread's connection to the server at ``address``; return it."""
    util.debug("making connection to manager")
    name = process.current_process().name
    thread_name = threading.current_thread().name
    if thread_name != "MainThread":
        name += "|" + thread_name
    conn = client(address, authkey=authkey)
    try:
        answer = dispatch(conn, None, "accept_connection", (name,))
    except BaseException:
        conn.close()
        raise
    channel = _request_channel(conn)
    channel.control = answer == _CONTROL_ON_PROXY_CONNECTIONS
    tls.connection = channel
    hook = _exit_hook[0]
    if hook is None or not hook.still_active():
        # A child starts without its parent's finalizers (and one that
        # connected while unpickling its start-up data saw them cleared).
        # Before any other exit finalizer: a manager's shutdown among them.
        _exit_hook[0] = util.Finalize(None, _say_exiting, exitpriority=1000)
    _open_proxy_connections.add(conn)
    return channel


# This process's proxy connections, told at a normal exit that it exits (see
# _EXITING); a forked child starts with none (the parent's are the parent's).
_open_proxy_connections: weakref.WeakSet = weakref.WeakSet()
_exit_hook: list = [None]


def _say_exiting() -> None:
    for conn in list(_open_proxy_connections):
        try:
            if not conn.closed:
                conn.send((None, _EXITING, (), {}))
        except Exception as e:  # noqa: BLE001 - the server may be gone already
            util.debug("could not tell the manager that this process exits: %r", e)


def _forget_parents_connections() -> None:
    _open_proxy_connections.clear()


os.register_at_fork(after_in_child=_forget_parents_connections)


def _exchange(tls: Any, conn: Any, address: Any, request: tuple) -> tuple:
    """Send ``request`` on the thread's connection ``conn``; return the (kind, result) answer.

    While the exchange is under way the connection is ``busy``: a finalizer
    that runs meanwhile (the garbage collector can run one at any point) must
    not put its own request in between.
    """
    # Saved and restored: pickling the request may run code that makes a call
    # of its own (before anything of this one is written).
    was_busy = tls.__dict__.get("busy", False)
    tls.busy = True
    try:
        conn.send(request)
        return conn.recv()
    except BaseException as error:
        # The connection may be out of step (an interrupted recv() would read
        # this call's answer as the next one's): start afresh.
        _drop_connection(tls, conn)
        lost = _lost_server(error, address)
        if lost is None:
            raise
        raise lost from error
    finally:
        tls.busy = was_busy


def _control_call(
    tls: Any,
    client: Callable[..., Any],
    address: Any,
    authkey: bytes,
    name: str,
    args: Sequence[Any],
    connect: bool,
) -> Any:
    """Call the server method ``name`` (incref, decref) on this thread's connection.

    On a connection of its own instead when the thread's is in the middle of
    an exchange (this runs from finalizers), or when the thread has none and
    ``connect`` is false.
    """
    conn = tls.__dict__.get("connection")
    if tls.__dict__.get("busy") or (conn is None and not connect):
        return _call_server(client, address, authkey, name, args)
    if conn is None:
        conn = _connect_thread(tls, client, address, authkey)
    if not getattr(conn, "control", False):
        return _call_server(client, address, authkey, name, args)
    kind, result = _exchange(tls, conn, address, (None, name, args, {}))
    if kind == "#RETURN":
        return result
    raise convert_to_error(kind, result)


def _drop_connection(tls: Any, conn: Any) -> None:
    if tls.__dict__.get("connection") is conn:
        del tls.connection
    try:
        conn.close()
    except Exception as e:  # noqa: BLE001
        util.debug("closing a broken connection failed: %r", e)


def RebuildProxy(func: Callable[..., Any], token: Token, serializer: str, kwds: dict) -> Any:
    """Rebuild a pickled proxy (``func`` is its type, or AutoProxy)."""
    current = process.current_process()
    server = getattr(current, "_manager_server", None)
    if server is not None and server.address == token.address:
        util.debug("Rebuild a proxy owned by manager, token=%r", token)
        kwds["manager_owned"] = True
        server._remember_local_proxy(token.id)
    incref = kwds.pop("incref", True)
    if not getattr(current, "_inheriting", False):
        return func(token, serializer, incref=incref, **kwds)
    # Part of a child's start-up data (spawn, forkserver): a manager that has
    # gone away must not stop the child from starting.
    proxy = func(token, serializer, incref=False, **kwds)
    if incref and not kwds.get("manager_owned") and isinstance(proxy, BaseProxy):
        try:
            proxy._incref()
        except Exception as e:  # noqa: BLE001
            util.info("incref failed: %s", e)
    return proxy


#
# Proxy types
#


def _exposed_method(typename: str, name: str) -> Callable[..., Any]:
    def method(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
        return self._callmethod(name, args, kwds)

    method.__name__ = name
    method.__qualname__ = f"{typename}.{name}"
    method.__doc__ = f"Call {name}() on the shared object and return a copy of the result."
    return method


def MakeProxyType(name: str, exposed: Iterable[str], _cache: dict = {}) -> type:  # noqa: B006
    """Return a BaseProxy subclass called ``name`` whose methods call ``exposed``.

    Types are cached by name and methods.  The type's module is the caller's,
    so a type assigned to a module attribute of the same name pickles by
    reference.
    """
    exposed = tuple(exposed)
    key = (name, exposed)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    namespace: dict[str, Any] = {meth: _exposed_method(name, meth) for meth in exposed}
    namespace["_exposed_"] = exposed
    namespace["__module__"] = sys._getframe(1).f_globals.get("__name__", __name__)
    ProxyType = type(name, (BaseProxy,), namespace)
    _cache[key] = ProxyType
    return ProxyType


def AutoProxy(
    token: Token,
    serializer: str,
    manager: Any = None,
    authkey: bytes | None = None,
    exposed: Any = None,
    incref: bool = True,
    manager_owned: bool = False,
) -> BaseProxy:
    """Return a proxy whose methods are those the server exposes for ``token``."""
    if authkey is None and manager is not None:
        authkey = manager._authkey
    if authkey is None:
        authkey = process.current_process().authkey
    if exposed is None:
        exposed = _call_server(
            _listener_client(serializer)[1], token.address, authkey, "get_methods", (token,)
        )
    ProxyType = MakeProxyType(f"AutoProxy[{token.typeid}]", exposed)
    proxy = ProxyType(
        token,
        serializer,
        manager=manager,
        authkey=authkey,
        incref=incref,
        manager_owned=manager_owned,
    )
    proxy._isauto = True
    return proxy


#
# The types SyncManager serves
#


class Namespace:
    """A bag of attributes; its repr shows those not starting with '_'."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = [
            f"{name}={value!r}" for name, value in self.__dict__.items() if not name.startswith("_")
        ]
        return f"{type(self).__name__}({', '.join(sorted(items))})"


class Value:
    """A value with ``get()``, ``set()`` and ``value`` (``typecode`` is only recorded)."""

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def Array(typecode: str, sequence: Iterable[Any], lock: Any = True) -> array.array:
    """Return an ``array.array`` (what ``SyncManager.Array`` shares)."""
    return array.array(typecode, sequence)


def _make_pool(*args: Any, **kwds: Any) -> Any:
    from .pool import Pool

    return Pool(*args, **kwds)


#
# Proxy types of SyncManager
#


class IteratorProxy(BaseProxy):
    """A proxy to an iterator or generator."""

    _exposed_ = ("__next__", "send", "throw", "close")

    def __iter__(self) -> IteratorProxy:
        return self

    def __next__(self, *args: Any) -> Any:
        return self._callmethod("__next__", args)

    def send(self, *args: Any) -> Any:
        return self._callmethod("send", args)

    def throw(self, *args: Any) -> Any:
        return self._callmethod("throw", args)

    def close(self, *args: Any) -> Any:
        return self._callmethod("close", args)


class AcquirerProxy(BaseProxy):
    """A proxy to a lock or semaphore."""

    _exposed_: tuple[str, ...] = ("acquire", "release")

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Any:
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod("acquire", args)

    def release(self) -> Any:
        return self._callmethod("release")

    def __enter__(self) -> Any:
        return self._callmethod("acquire")

    def __exit__(self, *exc_info: object) -> Any:
        return self._callmethod("release")


class ConditionProxy(AcquirerProxy):
    """A proxy to a ``threading.Condition``."""

    _exposed_ = ("acquire", "release", "wait", "notify", "notify_all")

    def wait(self, timeout: float | None = None) -> Any:
        return self._callmethod("wait", (timeout,))

    def notify(self, n: int = 1) -> Any:
        return self._callmethod("notify", (n,))

    def notify_all(self) -> Any:
        return self._callmethod("notify_all")

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` (evaluated here) is true, or ``timeout`` passes."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    """A proxy to a ``threading.Event``."""

    _exposed_ = ("is_set", "set", "clear", "wait")

    def is_set(self) -> Any:
        return self._callmethod("is_set")

    def set(self) -> Any:
        return self._callmethod("set")

    def clear(self) -> Any:
        return self._callmethod("clear")

    def wait(self, timeout: float | None = None) -> Any:
        return self._callmethod("wait", (timeout,))


class BarrierProxy(BaseProxy):
    """A proxy to a ``threading.Barrier``."""

    _exposed_ = ("__getattribute__", "wait", "abort", "reset")

    def wait(self, timeout: float | None = None) -> Any:
        return self._callmethod("wait", (timeout,))

    def abort(self) -> Any:
        return self._callmethod("abort")

    def reset(self) -> Any:
        return self._callmethod("reset")

    @property
    def parties(self) -> Any:
        return self._callmethod("__getattribute__", ("parties",))

    @property
    def n_waiting(self) -> Any:
        return self._callmethod("__getattribute__", ("n_waiting",))

    @property
    def broken(self) -> Any:
        return self._callmethod("__getattribute__", ("broken",))


class NamespaceProxy(BaseProxy):
    """A proxy to a :class:`Namespace`: attributes not starting with '_' are remote."""

    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def __getattr__(self, key: str) -> Any:
        if key[0] == "_":
            return object.__getattribute__(self, key)
        callmethod = object.__getattribute__(self, "_callmethod")
        return callmethod("__getattribute__", (key,))

    def __setattr__(self, key: str, value: Any) -> None:
        if key[0] == "_":
            return object.__setattr__(self, key, value)
        callmethod = object.__getattribute__(self, "_callmethod")
        return callmethod("__setattr__", (key, value))

    def __delattr__(self, key: str) -> None:
        if key[0] == "_":
            return object.__delattr__(self, key)
        callmethod = object.__getattribute__(self, "_callmethod")
        return callmethod("__delattr__", (key,))


class ValueProxy(BaseProxy):
    """A proxy to a :class:`Value`."""

    _exposed_ = ("get", "set")

    def get(self) -> Any:
        return self._callmethod("get")

    def set(self, value: Any) -> Any:
        return self._callmethod("set", (value,))

    value = property(get, set)

    __class_getitem__: Any = classmethod(types.GenericAlias)


BaseListProxy = MakeProxyType(
    "BaseListProxy",
    (
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "__imul__",
        # New in CPython 3.14, carried on every version:
        "clear",
        "copy",
    ),
)


class ListProxy(BaseListProxy):  # type: ignore[valid-type, misc]
    """A proxy to a list."""

    def __iadd__(self, value: Any) -> Self:
        self._callmethod("extend", (value,))
        return self

    def __imul__(self, value: Any) -> Self:
        self._callmethod("__imul__", (value,))
        return self

    __class_getitem__: Any = classmethod(types.GenericAlias)


_BaseDictProxy = MakeProxyType(
    "_BaseDictProxy",
    (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__iter__",
        "__len__",
        "__setitem__",
        "clear",
        "copy",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
        # New in CPython 3.14, carried on every version:
        "__ior__",
        "__or__",
        "__reversed__",
        "__ror__",
        "fromkeys",
    ),
)


class DictProxy(_BaseDictProxy):  # type: ignore[valid-type, misc]
    """A proxy to a dict (``iter()`` gives a proxy to the server's iterator).

    ``proxy | other`` and ``other | proxy`` return new plain dicts;
    ``reversed(proxy)`` iterates over a snapshot of the keys, last first;
    ``proxy.fromkeys(keys, value)`` returns a new plain dict.
    """

    _method_to_typeid_: ClassVar[dict[str, str]] = {"__iter__": "Iterator"}

    def __ior__(self, value: Any) -> Self:
        # dict |= x is dict.update(x); update answers None where __ior__ would
        # send the whole dict back.
        self._callmethod("update", (value,))
        return self

    __class_getitem__: Any = classmethod(types.GenericAlias)


_BaseSetProxy = MakeProxyType(
    "_BaseSetProxy",
    (
        "__and__",
        "__contains__",
        "__ge__",
        "__gt__",
        "__iand__",
        "__ior__",
        "__isub__",
        "__iter__",
        "__ixor__",
        "__le__",
        "__len__",
        "__lt__",
        "__or__",
        "__rand__",
        "__ror__",
        "__rsub__",
        "__rxor__",
        "__sub__",
        "__xor__",
        "add",
        "clear",
        "copy",
        "difference",
        "difference_update",
        "discard",
        "intersection",
        "intersection_update",
        "isdisjoint",
        "issubset",
        "issuperset",
        "pop",
        "remove",
        "symmetric_difference",
        "symmetric_difference_update",
        "union",
        "update",
    ),
)

# The in-place operators of a set proxy: special method -> (symbol, update method).
_SET_INPLACE = {
    "__ior__": ("|=", "update"),
    "__iand__": ("&=", "intersection_update"),
    "__isub__": ("-=", "difference_update"),
    "__ixor__": ("^=", "symmetric_difference_update"),
}


def _set_inplace(name: str) -> Callable[..., Any]:
    symbol, update = _SET_INPLACE[name]

    def method(self: BaseProxy, value: Any) -> Any:
        if isinstance(value, BaseProxy) and isinstance(value, _BaseSetProxy):
            value = value._getvalue()
        if isinstance(value, (set, frozenset)):
            # What the operator does with a set operand, without sending the
            # whole set back as the special method's result would.
            self._callmethod(update, (value,))
            return self
        if self._callmethod(name, (value,)) is NotImplemented:
            raise TypeError(
                f"unsupported operand type(s) for {symbol}: "
                f"{type(self).__name__!r} and {type(value).__name__!r} "
                f"(the right operand must be a set, a frozenset or a set proxy)"
            )
        return self

    method.__name__ = name
    method.__qualname__ = f"SetProxy.{name}"
    return method


class SetProxy(_BaseSetProxy):  # type: ignore[valid-type, misc]
    """A proxy to a set (new in CPython 3.14; here on every version).

    Operators with a set return new plain sets; ``iter()`` iterates over a
    snapshot; ``|=``, ``&=``, ``-=`` and ``^=`` change the shared set.
    """

    __ior__ = _set_inplace("__ior__")
    __iand__ = _set_inplace("__iand__")
    __isub__ = _set_inplace("__isub__")
    __ixor__ = _set_inplace("__ixor__")

    __class_getitem__: Any = classmethod(types.GenericAlias)


# As CPython 3.14 does, so that isinstance() checks written for the real
# containers accept the proxies.  (3.14 registers the set proxy as a
# MutableMapping, a slip: CPython issue gh-142740.)
collections.abc.MutableSequence.register(BaseListProxy)
collections.abc.MutableMapping.register(_BaseDictProxy)
collections.abc.MutableSet.register(_BaseSetProxy)


ArrayProxy = MakeProxyType("ArrayProxy", ("__len__", "__getitem__", "__setitem__"))


BasePoolProxy = MakeProxyType(
    "BasePoolProxy",
    (
        "apply",
        "apply_async",
        "close",
        "imap",
        "imap_unordered",
        "join",
        "map",
        "map_async",
        "starmap",
        "starmap_async",
        "terminate",
    ),
)
BasePoolProxy._method_to_typeid_ = {  # type: ignore[attr-defined]
    "apply_async": "AsyncResult",
    "map_async": "AsyncResult",
    "starmap_async": "AsyncResult",
    "imap": "Iterator",
    "imap_unordered": "Iterator",
}


class PoolProxy(BasePoolProxy):  # type: ignore[valid-type, misc]
    """A proxy to a :class:`multiprocess.pool.Pool` running in the server process."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()


#
# SyncManager
#


class SyncManager(BaseManager):
    """A manager of the types threads synchronize with, plus list, dict, set and Namespace.

    The server-side objects are the thread-based ones (``queue.Queue``,
    ``threading.Lock``...): all clients' calls run in the server process.
    ``multiprocess.Manager()`` returns a started instance.
    """


SyncManager.register("Queue", queue.Queue)
SyncManager.register("JoinableQueue", queue.Queue)
SyncManager.register("Event", threading.Event, EventProxy)
SyncManager.register("Lock", threading.Lock, AcquirerProxy)
SyncManager.register("RLock", threading.RLock, AcquirerProxy)
SyncManager.register("Semaphore", threading.Semaphore, AcquirerProxy)
SyncManager.register("BoundedSemaphore", threading.BoundedSemaphore, AcquirerProxy)
SyncManager.register("Condition", threading.Condition, ConditionProxy)
SyncManager.register("Barrier", threading.Barrier, BarrierProxy)
SyncManager.register("Pool", _make_pool, PoolProxy)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("set", set, SetProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", Array, ArrayProxy)
SyncManager.register("Namespace", Namespace, NamespaceProxy)

# Types of what methods of the proxies above return as proxies.
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)


#
# SharedMemoryManager
#


class _SharedMemoryTracker:
    """The shared memory blocks a SharedMemoryServer unlinks when it shuts down."""

    def __init__(self, name: str, segment_names: list | None = None) -> None:
        self.shared_memory_context_name = name
        self.segment_names = [] if segment_names is None else segment_names

    def register_segment(self, segment_name: str) -> None:
        """Track the block ``segment_name``."""
        util.debug(f"Register segment {segment_name!r} in pid {os.getpid()}")
        self.segment_names.append(segment_name)

    def destroy_segment(self, segment_name: str) -> None:
        """Unlink the block ``segment_name`` and stop tracking it."""
        from . import shared_memory

        util.debug(f"Destroy segment {segment_name!r} in pid {os.getpid()}")
        self.segment_names.remove(segment_name)
        segment = shared_memory.SharedMemory(segment_name)
        segment.close()
        segment.unlink()

    def unlink(self) -> None:
        """Unlink every tracked block."""
        for segment_name in self.segment_names[:]:
            self.destroy_segment(segment_name)

    def __del__(self) -> None:
        util.debug(f"Call {type(self).__name__}.__del__ in {os.getpid()}")
        self.unlink()

    def __getstate__(self) -> tuple:
        return (self.shared_memory_context_name, self.segment_names)

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)  # type: ignore[misc]


class SharedMemoryServer(Server):
    """A Server that also tracks shared memory blocks and unlinks them at shutdown."""

    public: ClassVar[list[str]] = [
        *Server.public,
        "track_segment",
        "release_segment",
        "list_segments",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Server.__init__(self, *args, **kwargs)
        address = self.address
        # A Linux abstract socket address can be bytes.
        if isinstance(address, bytes):
            address = os.fsdecode(address)
        self.shared_memory_context = _SharedMemoryTracker(f"shm_{address}_{os.getpid()}")
        util.debug(f"SharedMemoryServer started by pid {os.getpid()}")

    def create(self, c: Any, typeid: str, /, *args: Any, **kwargs: Any) -> tuple:
        """Create a shared object; proxy types marked ``_shared_memory_proxy`` get the tracker."""
        if hasattr(self.registry[typeid][-1], "_shared_memory_proxy"):
            kwargs["shared_memory_context"] = self.shared_memory_context
        return Server.create(self, c, typeid, *args, **kwargs)

    def shutdown(self, c: Any) -> Any:
        """Unlink every tracked block, then stop."""
        self.shared_memory_context.unlink()
        return Server.shutdown(self, c)

    def track_segment(self, c: Any, segment_name: str) -> None:
        """Track the block ``segment_name``."""
        self.shared_memory_context.register_segment(segment_name)

    def release_segment(self, c: Any, segment_name: str) -> None:
        """Unlink the block ``segment_name`` and stop tracking it."""
        self.shared_memory_context.destroy_segment(segment_name)

    def list_segments(self, c: Any) -> list:
        """Return the names of the tracked blocks."""
        return self.shared_memory_context.segment_names


class SharedMemoryManager(BaseManager):
    """A manager whose server unlinks the shared memory blocks it made at shutdown.

    ``SharedMemory(size)`` and ``ShareableList(sequence)`` create blocks in
    this process and have the server track them; ``shutdown()`` (or leaving a
    ``with`` block) unlinks them all.
    """

    _Server = SharedMemoryServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Start the resource tracker before the server process, so that both
        # share one (bpo-36867): blocks registered here and unlinked there
        # must be the same tracker's business.
        from . import resource_tracker

        resource_tracker.ensure_running()
        BaseManager.__init__(self, *args, **kwargs)
        util.debug(f"{type(self).__name__} created by pid {os.getpid()}")

    def get_server(self) -> Server:
        """Return a SharedMemoryServer for this manager, to run with ``serve_forever()``."""
        if self._state.value != State.INITIAL:
            raise _state_error(self._state, "SharedMemoryServer")
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def _check_started(self) -> None:
        if self._address is None:
            raise ValueError(
                "the SharedMemoryManager is not started: call start() (or connect()) first"
            )

    def _track(self, name: str | None, unlink: Callable[[], None]) -> None:
        try:
            _call_server(self._Client, self._address, self._authkey, "track_segment", (name,))
        except BaseException:
            unlink()
            raise

    def SharedMemory(self, size: int) -> Any:
        """Return a new SharedMemory block of ``size`` bytes that the server tracks."""
        from . import shared_memory

        self._check_started()
        sms = shared_memory.SharedMemory(None, create=True, size=size)
        self._track(sms.name, sms.unlink)  # type: ignore[arg-type]
        return sms

    def ShareableList(self, sequence: Iterable[Any] | None) -> Any:
        """Return a new ShareableList holding ``sequence`` that the server tracks."""
        from . import shared_memory

        self._check_started()
        sl = shared_memory.ShareableList(sequence)
        self._track(sl.shm.name, sl.shm.unlink)
        return sl
