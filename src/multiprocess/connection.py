"""Connections: framed messages over pipes and sockets (layer 4).

A :class:`Connection` wraps one file descriptor (an ``os.pipe`` end, a
``socketpair`` end, or a connected AF_UNIX / AF_INET socket) and moves whole
messages over it::

    Pipe() / Client() / Listener.accept()
                |
            Connection --send(obj)--> reduction serializer --bytes--> frame --> fd
                       <--recv()----- reduction.loads <-------bytes-- frame <-- fd

Wire format (the same as the standard library's, so that our connections
interoperate with ``multiprocessing`` peers): a 4-byte big-endian signed length,
then the payload.  A payload longer than 0x7fffffff bytes is announced by a
length of -1 followed by an 8-byte big-endian unsigned length.

Limits on untrusted lengths: ``recv_bytes(maxlength)`` checks the announced
length before reading or allocating anything.  Without ``maxlength`` the
announced length is not trusted with memory either: data is read in chunks of
at most 1 MiB and kept as it arrives (``recv()`` preallocates one buffer only
for messages up to 32 MiB), so a forged header such as 2**62 costs no more
memory than the peer really sends.  If the peer closes early the reader gets
an ``EOFError`` (which is also an ``OSError``, as the standard library raises
there); if the peer stays connected and silent the reader waits, as it would
for any message still in transit (use ``poll()`` or ``maxlength`` to bound
that).  A header that no message can have (a negative length other than -1,
or more than ``sys.maxsize``) raises ``OSError("bad message length")`` and, as
an oversized message does, leaves the connection unreadable.

Large objects (Linux): on a duplex ``Pipe()``, and on an AF_UNIX ``Listener``
/ ``Client`` pair whose two ends are both this package (each side marks the
random part of its authkey challenge; a standard-library peer just signs it,
and never sees the new frame), ``send()`` passes buffers, pickles and bytes
objects of 1 MiB or more in memfds, with an out-of-band frame that the
standard library's format cannot produce (a length word of -2): see
:mod:`multiprocess._conn_oob`.  ``send_bytes()`` / ``recv_bytes()`` stay
byte-exact with the standard library; ``recv_bytes()`` on an out-of-band
frame returns the equivalent plain pickle.

Authentication: ``Listener(authkey=...)`` and ``Client(authkey=...)`` run the
HMAC challenge of CPython 3.12+ (``#CHALLENGE#{sha256}<random>``), and accept the
legacy HMAC-MD5 form of Python <= 3.11 peers.  The challenge is run on
``send_bytes`` / ``recv_bytes`` with a 256-byte limit, before anything is
unpickled.

Security: ``recv()`` unpickles, and unpickling runs code chosen by the sender.
Only call ``recv()`` on connections whose peer you trust: a ``Pipe`` you made,
or a ``Listener`` / ``Client`` with an ``authkey``.  A Listener without an authkey
accepts anyone who can reach its address; on such connections use
``recv_bytes()`` and parse the data yourself.

This module is POSIX only: ``Connection`` is built on ``os.read`` / ``os.write``
of file descriptors.  A Windows named-pipe transport would be another subclass
of ``_ConnectionBase`` in its own module.
"""

from __future__ import annotations

import operator
import os
import pickle
import socket
import struct
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType
    from typing import Any, Callable, Generic
else:
    from ._generics import Generic

from . import _conn_oob, reduction, util

# Both are also re-exported from here, as the standard library does.
from ._errors import AuthenticationError, BufferTooShort, _TruncatedMessageError
from ._forklock import FORK_LOCK
from ._memfd import HAVE_MEMFD
from ._posix import wait_readable, writev_all

if TYPE_CHECKING:
    from typing_extensions import Self, TypeVar

    # What a connection sends and receives, Any unless said (Connection[int, str]),
    # as in typeshed's stubs of the standard library.
    _SendT_contra = TypeVar("_SendT_contra", contravariant=True, default=Any)
    _RecvT_co = TypeVar("_RecvT_co", covariant=True, default=Any)
else:  # (type variables and their defaults matter to type checkers alone)
    from ._generics import TypeVar

    _SendT_contra = TypeVar("_SendT_contra", contravariant=True)
    _RecvT_co = TypeVar("_RecvT_co", covariant=True)

__all__ = ["Client", "Listener", "Pipe", "wait"]

BUFSIZE = 8192
# A very generous timeout for local peers.  The serving side of the
# authentication handshake (Listener.accept(), a manager's server) gives the
# whole of it at most this long, every byte of every message included, so that
# a client that connects and then says nothing, or a little, cannot hold it up
# for longer.  Listener(handshake_timeout=...) and Server.handshake_timeout
# override it.
CONNECTION_TIMEOUT = 20.0

default_family = "AF_UNIX"
families = ["AF_INET", "AF_UNIX"]

# Accepted when named explicitly, but not listed in ``families`` (which the
# standard library's tests iterate over).
_EXTRA_FAMILIES = ["AF_INET6"] if socket.has_ipv6 else []

# -- framing constants ---------------------------------------------------

_HEADER = struct.Struct("!i")
_LONG_HEADER = struct.Struct("!Q")
_SHORT_MAX = 0x7FFFFFFF
# Header and payload are joined before writing up to this size: one write()
# avoids Nagle delays on TCP (bpo-20540) and costs a small copy.
_CONCAT_LIMIT = 16384
# Most bytes asked of one os.read(): os.read allocates the whole count up
# front, so this bounds what a length header alone can make us allocate.
_READ_CHUNK = 1024 * 1024
# Largest buffer that recv() allocates up front on the strength of a length
# header (reading into one buffer saves a copy); longer messages are read in
# chunks of _READ_CHUNK.
_PREALLOC_LIMIT = 32 * 1024 * 1024
# Largest single read()/write(): macOS rejects counts above INT_MAX.
_IO_CHUNK = 1 << 30


def _end_of_file(got: int, in_message: bool) -> Exception:
    """The error for end of file after ``got`` bytes: EOFError between messages, else truncation."""
    if got == 0 and not in_message:
        return EOFError()
    return _TruncatedMessageError("got end of file during message")


# -- addresses -----------------------------------------------------------


def arbitrary_address(family: str) -> Any:
    """Return a fresh address for a Listener of ``family``.

    ``('localhost', 0)`` for AF_INET (the OS picks the port), a new path in
    this process tree's private temporary directory for AF_UNIX.
    """
    if family == "AF_INET":
        return ("localhost", 0)
    if family == "AF_INET6" and family in _EXTRA_FAMILIES:
        return ("::1", 0)
    if family == "AF_UNIX":
        # The directory is private (mode 0700); the random name only has to be
        # unique, and bind() fails rather than reuse an existing path.
        return os.path.join(util.get_temp_dir(), "listener-" + os.urandom(8).hex())
    raise ValueError("unrecognized family")


def _validate_family(family: str) -> None:
    """Raise ValueError unless ``family`` can be used on this platform."""
    if family not in families and family not in _EXTRA_FAMILIES:
        raise ValueError(f"Family {family} is not recognized.")


def address_type(address: Any) -> str:
    """Return the family of ``address``: 'AF_INET', 'AF_UNIX' or 'AF_PIPE'.

    Tuples are internet addresses (4-tuples are IPv6), strings starting with
    two backslashes are Windows named pipes (rejected later on POSIX), other
    strings and bytes are unix socket paths (or Linux abstract names).
    """
    if isinstance(address, tuple):
        if len(address) == 4 and "AF_INET6" in _EXTRA_FAMILIES:
            return "AF_INET6"
        return "AF_INET"
    if isinstance(address, str):
        return "AF_PIPE" if address.startswith("\\\\") else "AF_UNIX"
    if isinstance(address, bytes) and address:
        return "AF_UNIX"
    raise ValueError(f"address type of {address!r} unrecognized")


# -- connections ---------------------------------------------------------


class _ConnectionBase(Generic[_SendT_contra, _RecvT_co]):
    """The transport-independent half of a connection.

    Subclasses provide ``_close``, ``_send_frame``, ``_recv_header``,
    ``_recv_payload``, ``_recv_payload_buffer``, ``_recv_payload_into`` and
    ``_poll``.
    """

    _handle: int | None = None
    # Whether the transport passes descriptors (an AF_UNIX stream socket on
    # Linux), so that out-of-band frames can be read; and whether the peer
    # is known to read them, so that send() may write them.
    _oob_capable: bool = False
    _oob: bool = False

    def __init__(
        self,
        handle: int,
        readable: bool = True,
        writable: bool = True,
        *,
        serializer: str | None = None,
    ) -> None:
        handle = operator.index(handle)
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        self._handle = handle
        self._readable = bool(readable)
        self._writable = bool(writable)
        self._serializer = serializer

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._handle is None:
            return f"<{type(self).__name__} closed>"
        mode = (
            "duplex"
            if self._readable and self._writable
            else ("read-only" if self._readable else "write-only")
        )
        return f"<{type(self).__name__} handle={self._handle} {mode}>"

    # -- state checks --

    def _check_closed(self) -> None:
        if self._handle is None:
            raise OSError("handle is closed")

    def _check_readable(self) -> None:
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self) -> None:
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self) -> None:
        self._stop_reading(OSError("bad message length"))

    def _stop_reading(self, error: Exception) -> None:
        # The unread rest of the message is still in the stream, so nothing
        # after it can be read correctly: stop reading (and close a
        # connection that has nothing else to offer), then raise ``error``.
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise error

    # -- properties --

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._handle is None

    @property
    def readable(self) -> bool:
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection is writable."""
        return self._writable

    def fileno(self) -> int:
        """File descriptor of the connection."""
        handle = self._handle
        if handle is None:
            raise OSError("handle is closed")
        return handle

    def close(self) -> None:
        """Close the connection (again is a no-op)."""
        # Forget the handle before closing it: another thread may fork at any
        # moment, and a child that sees a handle here closes it (on collection,
        # or in an after-fork handler).  Once closed, the number may already
        # belong to a new pipe of that child (its process sentinel, say).
        handle, self._handle = self._handle, None
        if handle is not None:
            self._close(handle)

    # -- sending --

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send ``size`` bytes of the bytes-like ``buf`` from ``offset`` as one message.

        ``offset`` and ``size`` count bytes, whatever the item size of ``buf``.

        Raises:
            ValueError: ``offset`` or ``size`` is negative or out of range.
            OSError: the connection is closed or read-only.
        """
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.ndim != 1 or m.itemsize != 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send_frame(m[offset : offset + size])

    def send(self, obj: _SendT_contra) -> None:
        """Serialize ``obj`` with this connection's serializer and send it.

        The serializer (``dill`` unless the connection was made with another)
        is looked up in :mod:`multiprocess.reduction` at each call.  Nothing is
        written if serialization fails.
        """
        self._check_closed()
        self._check_writable()
        if self._oob:
            _conn_oob.send(self, obj, self._serializer)
            return
        data = reduction.get_serializer(self._serializer).dumps(obj)
        self._send_frame(memoryview(data))

    # -- receiving --

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Receive one message as bytes.

        Args:
            maxlength: if given, a message announced as longer is refused
                before any of it is read.

        Raises:
            EOFError: the peer closed the connection (before or, as a subclass
                that is also an OSError, during a message).
            OSError: the message is longer than ``maxlength`` or its header is
                invalid; the connection is then unusable for reading (and is
                closed if it is read-only).
        """
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        size = self._recv_header()
        if size == _conn_oob.OOB_LENGTH_WORD:
            data = _conn_oob.recv_in_band(self)
            if maxlength is not None and len(data) > maxlength:
                self._bad_message_length()
            return data
        if maxlength is not None and size > maxlength:
            self._bad_message_length()
        return self._recv_payload(size)

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive one message into the writable buffer ``buf`` at byte ``offset``.

        Returns the number of bytes received.

        Raises:
            BufferTooShort: the message does not fit; the whole message is in
                ``args[0]`` and the connection remains usable.
            ValueError: ``offset`` is negative or beyond the buffer.
        """
        self._check_closed()
        self._check_readable()
        # Every check on the buffer comes before reading: a failure after the
        # header was read would leave the stream out of step.
        with memoryview(buf) as m, m.cast("B") as flat:
            if flat.readonly:
                raise TypeError("recv_bytes_into() needs a writable buffer")
            bytesize = flat.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            size = self._recv_header()
            if size == _conn_oob.OOB_LENGTH_WORD:
                data = _conn_oob.recv_in_band(self)
                size = len(data)
                if offset + size > bytesize:
                    raise BufferTooShort(data)
                flat[offset : offset + size] = data
                return size
            if offset + size > bytesize:
                raise BufferTooShort(self._recv_payload(size))
            with flat[offset : offset + size] as target:
                self._recv_payload_into(target)
            return size

    def recv(self) -> _RecvT_co:
        """Receive one message and unpickle it.

        Unpickling runs code chosen by the sender: only use this with a peer
        you trust (see the module documentation).

        Raises:
            EOFError: the peer closed the connection.
            pickle.UnpicklingError (or whatever the payload's reducers raise):
                the message is not a valid pickle.  The message has been
                consumed, so the connection remains usable.
        """
        self._check_closed()
        self._check_readable()
        size = self._recv_header()
        if size == _conn_oob.OOB_LENGTH_WORD:
            return _conn_oob.recv(self)
        data = self._recv_payload_buffer(size)
        try:
            return reduction.loads(data)
        except EOFError as e:
            # A truncated pickle must not look like the peer hanging up.
            raise pickle.UnpicklingError(
                f"message of {len(data)} bytes is not a complete pickle"
            ) from e

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Return whether there is data to read, waiting up to ``timeout`` seconds.

        ``None`` waits forever; zero or a negative timeout does not wait.
        End of file counts as readable (``recv`` then raises ``EOFError``).
        """
        self._check_closed()
        self._check_readable()
        return self._poll(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport hooks --

    def _close(self, handle: int) -> None:
        raise NotImplementedError

    def _send_frame(self, payload: memoryview) -> None:
        raise NotImplementedError

    def _recv_header(self) -> int:
        raise NotImplementedError

    def _recv_payload(self, size: int) -> bytes:
        raise NotImplementedError

    def _recv_payload_buffer(self, size: int) -> bytes | bytearray:
        raise NotImplementedError

    def _recv_payload_into(self, view: memoryview) -> None:
        raise NotImplementedError

    def _poll(self, timeout: float | None) -> bool:
        raise NotImplementedError


class Connection(_ConnectionBase[_SendT_contra, _RecvT_co]):
    """A connection over a POSIX file descriptor (pipe end or stream socket).

    Args:
        handle: the file descriptor; the connection owns it and closes it.
        readable, writable: which directions may be used.
        serializer: name of the serializer ``send()`` uses ('dill', 'pickle',
            'cloudpickle'); None means the package default.  ``recv()``
            reads any of them.
    """

    def _close(self, handle: int, _close: Callable[[int], None] = os.close) -> None:
        # os.close is bound at definition time: __del__ may run while the
        # interpreter is shutting down.
        _close(handle)

    def __reduce__(self) -> Any:
        # Pickling goes through the reducer registered with reduction; this
        # is the same reducer for picklers that do not consult it (dill's).
        return reduce_connection(self)

    # -- writing --

    def _send_frame(self, payload: memoryview) -> None:
        n = payload.nbytes
        if n > _SHORT_MAX:
            header = _HEADER.pack(-1) + _LONG_HEADER.pack(n)
        else:
            header = _HEADER.pack(n)
        if n <= _CONCAT_LIMIT:
            # Never write a zero-length payload on its own: it would raise
            # EPIPE if the reader had already gone.
            self._write_all(memoryview(header + payload))
        else:
            self._writev_all([memoryview(header), payload])

    def _write_all(self, data: memoryview) -> None:
        fd = self._handle
        written = os.write(fd, data)  # type: ignore[arg-type]
        while written < len(data):
            data = data[written:]
            written = os.write(fd, data[:_IO_CHUNK])  # type: ignore[arg-type]

    def _writev_all(self, views: list[memoryview]) -> None:
        writev_all(self._handle, views)  # type: ignore[arg-type]

    # -- reading --

    def _read_exact(self, size: int, in_message: bool = True) -> bytes:
        """Read exactly ``size`` bytes; memory grows only with what arrives."""
        fd = self._handle
        if size <= _READ_CHUNK:
            # Usually all of it at once: no list, no join.
            chunk = os.read(fd, size)  # type: ignore[arg-type]
            if len(chunk) == size:
                return chunk
            if not chunk:
                raise _end_of_file(0, in_message)
            parts, got = [chunk], len(chunk)
        else:
            parts, got = [], 0
        while got < size:
            chunk = os.read(fd, min(size - got, _READ_CHUNK))  # type: ignore[arg-type]
            if not chunk:
                raise _end_of_file(got, in_message)
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)  # no copy for a single part

    def _recv_header(self) -> int:
        (size,) = _HEADER.unpack(self._read_exact(4, in_message=False))
        if size == -1:
            (size,) = _LONG_HEADER.unpack(self._read_exact(8, in_message=True))
            if size > sys.maxsize:
                self._bad_message_length()
        elif size < 0:
            if size == _conn_oob.OOB_LENGTH_WORD and self._oob_capable:
                return size
            self._bad_message_length()
        return size

    def _recv_payload_into(self, view: memoryview) -> None:
        fd = self._handle
        pos, end = 0, view.nbytes
        while pos < end:
            n = os.readv(fd, [view[pos : min(end, pos + _IO_CHUNK)]])  # type: ignore[arg-type]
            if n == 0:
                raise _TruncatedMessageError("got end of file during message")
            pos += n

    def _recv_payload(self, size: int) -> bytes:
        return self._read_exact(size)

    def _recv_payload_buffer(self, size: int) -> bytes | bytearray:
        if _READ_CHUNK < size <= _PREALLOC_LIMIT:
            # One buffer filled in place: no joining copy (bytes would need one).
            buf = bytearray(size)
            with memoryview(buf) as view:
                self._recv_payload_into(view)
            return buf
        # Small, or too long to trust the header with an allocation: a
        # forged length costs only as much memory as the peer really sends.
        return self._read_exact(size)

    def _poll(self, timeout: float | None) -> bool:
        return bool(wait_readable([self._handle], timeout))


# -- public constructors -------------------------------------------------


class Listener:
    """A bound, listening socket that returns a Connection per client.

    Args:
        address: where to listen; default: a fresh address of ``family``.
        family: 'AF_UNIX' (the default) or 'AF_INET' (also 'AF_INET6'),
            inferred from ``address`` when given.
        backlog: the socket's listen backlog.
        authkey: if not None, bytes used as the secret of the HMAC challenge
            that every client must pass in ``accept()`` (both ways: the
            client checks us too).  None means no authentication.
        serializer: serializer name for the accepted connections' ``send()``.
        handshake_timeout: seconds a client has to complete the whole
            challenge in ``accept()``; None means ``CONNECTION_TIMEOUT``
            (20 s).  A client that is slower, or stalls halfway through a
            message, is dropped when it runs out.

    A unix socket file is removed when the listener is closed, collected or
    the process exits.
    """

    def __init__(
        self,
        address: Any = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
        *,
        serializer: str | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        if handshake_timeout is not None and not handshake_timeout > 0:
            raise ValueError(
                f"handshake_timeout must be a positive number, not {handshake_timeout!r}"
            )
        family = family or (address and address_type(address)) or default_family
        _validate_family(family)
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError("authkey should be a byte string")
        address = address or arbitrary_address(family)
        self._socket_listener = SocketListener(address, family, backlog, serializer=serializer)
        # None once closed; the socket listener is kept for ``address``.
        self._listener: SocketListener | None = self._socket_listener
        self._authkey = authkey
        self._handshake_timeout = handshake_timeout

    def accept(self) -> Connection:
        """Wait for a client and return a connection to it.

        With an authkey, the client must pass the challenge first, within the
        listener's ``handshake_timeout``; if it does not, its connection is
        closed and AuthenticationError (or EOFError / OSError for a client
        that hangs up or breaks the protocol) is raised.  A client that says
        nothing, or stops in the middle of a message, holds ``accept()`` up
        for at most that long.  The listener itself remains usable in every
        case.
        """
        if self._listener is None:
            raise OSError("listener is closed")
        c = self._listener.accept()
        if self._authkey is not None:
            timeout = self._handshake_timeout
            try:
                _serve_handshake(
                    c, self._authkey, CONNECTION_TIMEOUT if timeout is None else timeout
                )
            except BaseException:
                c.close()
                raise
        return c

    def close(self) -> None:
        """Close the listening socket (and remove its socket file)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @property
    def address(self) -> Any:
        """The address the listener is bound to (with the real port for AF_INET)."""
        return self._socket_listener._address

    @property
    def last_accepted(self) -> Any:
        """The address of the last accepted client, or None."""
        return self._socket_listener._last_accepted

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


def Client(
    address: Any,
    family: str | None = None,
    authkey: bytes | None = None,
    *,
    serializer: str | None = None,
) -> Connection:
    """Connect to the Listener at ``address`` and return the connection.

    With an authkey, both sides prove they know it before this returns;
    otherwise AuthenticationError is raised and the connection is closed.
    """
    family = family or address_type(address)
    _validate_family(family)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    c = SocketClient(address, family, serializer=serializer)
    if authkey is not None:
        try:
            # The server may take any time to get round to accept(): no timeout.
            answer_challenge(c, authkey)
            deliver_challenge(c, authkey)
        except BaseException:
            c.close()
            raise
    return c


def Pipe(duplex: bool = True, *, serializer: str | None = None) -> tuple[Connection, Connection]:
    """Return a pair of connected Connections.

    With ``duplex`` (the default) both ends can send and receive (a
    socketpair); otherwise the first end only receives and the second only
    sends (an os.pipe).  ``serializer`` names what both ends' ``send()`` use.
    """
    if duplex:
        s1, s2 = socket.socketpair()
        # A default socket timeout (socket.setdefaulttimeout) would make them
        # non-blocking at the OS level; connections need blocking fds.
        s1.setblocking(True)
        s2.setblocking(True)
        c1 = Connection(s1.detach(), serializer=serializer)
        c2 = Connection(s2.detach(), serializer=serializer)
        # Both ends are ours: large objects may go out of band.
        c1._oob_capable = c2._oob_capable = c1._oob = c2._oob = HAVE_MEMFD
    else:
        r, w = os.pipe()
        c1 = Connection(r, writable=False, serializer=serializer)
        c2 = Connection(w, readable=False, serializer=serializer)
    return c1, c2


# -- sockets ---------------------------------------------------------------


def _unlink_quietly(path: Any) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SocketListener:
    """A socket bound to ``address`` and listening (no authentication)."""

    def __init__(
        self, address: Any, family: str, backlog: int = 1, *, serializer: str | None = None
    ) -> None:
        self._socket = socket.socket(getattr(socket, family))
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.setblocking(True)
            self._socket.bind(address)
            self._socket.listen(backlog)
            self._address = self._socket.getsockname()
        except OSError:
            self._socket.close()
            raise
        self._family = family
        self._serializer = serializer
        self._last_accepted: Any = None
        self._unlink: util.Finalize | None
        if family == "AF_UNIX" and not util.is_abstract_socket_namespace(address):
            # Registered only once bind() succeeded: a failed bind must not
            # remove another listener's socket file.
            self._unlink = util.Finalize(self, _unlink_quietly, args=(address,), exitpriority=0)
        else:
            self._unlink = None

    def accept(self) -> Connection:
        s, self._last_accepted = self._socket.accept()
        # The accepted socket inherits the default timeout, if one is set.
        s.setblocking(True)
        c = Connection(s.detach(), serializer=self._serializer)
        c._oob_capable = HAVE_MEMFD and self._family == "AF_UNIX"
        return c

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            unlink, self._unlink = self._unlink, None
            if unlink is not None:
                unlink()


def SocketClient(
    address: Any, family: str | None = None, *, serializer: str | None = None
) -> Connection:
    """Return a connection to the socket listening at ``address`` (no authentication)."""
    family = family or address_type(address)
    with socket.socket(getattr(socket, family)) as s:
        s.setblocking(True)
        s.connect(address)
        c = Connection(s.detach(), serializer=serializer)
        c._oob_capable = HAVE_MEMFD and family == "AF_UNIX"
        return c


# -- authentication --------------------------------------------------------
#
# Server (deliver_challenge)               Client (answer_challenge)
#   send  CHALLENGE + b"{sha256}" + 40 random bytes   (a 3.11 server: 20 random bytes)
#                                          reply HMAC(authkey, message after CHALLENGE)
#                                            as b"{sha256}" + mac  (raw 16-byte MD5
#                                            mac if the challenge had no prefix)
#   check the reply (also a raw MD5 reply from a 3.11 client), send WELCOME or FAILURE
#                                          raise AuthenticationError unless WELCOME
# Listener.accept() and Client() run it once each way.  The MAC covers the
# digest prefix, so a man in the middle cannot downgrade the server's choice.

MESSAGE_LENGTH = 40  # random bytes per challenge; must be more than 20
CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
# Names used by Python 3.12+.
_CHALLENGE, _WELCOME, _FAILURE = CHALLENGE, WELCOME, FAILURE
# Leads the random part of a challenge from a connection of ours that can
# read out-of-band frames.  A standard-library peer signs it like any random
# bytes; a peer of ours that sees it may send such frames (see _conn_oob).
_OOB_MARK = b"multiprocess-oob1:"

_ALLOWED_DIGESTS = frozenset({b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"})
_MAX_DIGEST_NAME = max(len(name) for name in _ALLOWED_DIGESTS)
# A challenge from a Python <= 3.11 server is exactly 20 random bytes and an
# answer from such a client is a raw 16-byte HMAC-MD5; the modern forms are
# always longer than both.
_LEGACY_CHALLENGE_LENGTH = 20
_LEGACY_ANSWER_LENGTH = 16
_HANDSHAKE_MAXLENGTH = 256


def _split_digest(message: bytes) -> tuple[str, bytes]:
    """Split ``b"{name}payload"`` into ('name', payload); ('', message) for legacy forms."""
    if len(message) in (_LEGACY_CHALLENGE_LENGTH, _LEGACY_ANSWER_LENGTH):
        return "", message
    if message.startswith(b"{"):
        end = message.find(b"}", 1, _MAX_DIGEST_NAME + 2)
        if end > 0 and message[1:end] in _ALLOWED_DIGESTS:
            return message[1:end].decode("ascii"), message[end + 1 :]
    raise AuthenticationError(
        f"unsupported message length, missing digest prefix, or unsupported digest: "
        f"{message[:40]!r}"
    )


def _create_response(authkey: bytes, message: bytes) -> bytes:
    """The answer to challenge ``message``, in the form the challenge asks for."""
    digest_name = _split_digest(message)[0]
    with FORK_LOCK:  # imported at the first handshake (see _verify_response)
        import hmac
    if not digest_name:
        try:
            return hmac.new(authkey, message, "md5").digest()
        except ValueError:
            # No MD5 here (FIPS mode): answer in the modern form; a legacy
            # server will refuse it, which is the best we can do.
            digest_name = "sha256"
    mac = hmac.new(authkey, message, digest_name).digest()
    return b"{%s}%s" % (digest_name.encode("ascii"), mac)


def _verify_response(authkey: bytes, message: bytes, response: bytes) -> None:
    digest_name, mac = _split_digest(response)
    digest_name = digest_name or "md5"
    # hmac (and hashlib's OpenSSL binding) are imported at the first handshake,
    # under the lock fork() waits for, as manager and listener threads shake
    # hands: a pool's pipes and a short script never need them.
    with FORK_LOCK:
        import hmac
    try:
        expected = hmac.new(authkey, message, digest_name).digest()
    except ValueError:
        raise AuthenticationError(f"digest {digest_name!r} is not available") from None
    if not hmac.compare_digest(expected, mac):
        raise AuthenticationError("digest received was wrong")


# Compatibility hook: CPython 3.12+'s test suite calls the check by this name,
# with the same (authkey, message, response) arguments.
_verify_challenge = _verify_response


def _check_authkey(authkey: Any) -> None:
    if not isinstance(authkey, bytes):
        # ValueError, not TypeError: what the standard library raises here.
        raise ValueError(f"Authkey must be bytes, not {type(authkey)!s}")  # noqa: TRY004


class _Deadline:
    """When the serving side of a handshake gives up on its peer."""

    __slots__ = ("at", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout

    def expired(self) -> AuthenticationError:
        return AuthenticationError(
            f"peer did not answer within {self.timeout} seconds (the deadline of the "
            "whole authentication handshake)"
        )


def _serve_handshake(connection: Any, authkey: bytes, timeout: float) -> None:
    """The serving side's handshake: challenge the peer, then answer its challenge.

    The whole of it must be over within ``timeout`` seconds, or
    AuthenticationError is raised; each read waits only as long as is left.
    """
    deadline = _Deadline(timeout)
    _deliver_challenge(connection, authkey, "sha256", deadline)
    _answer_challenge(connection, authkey, deadline)


def _recv_handshake(connection: Any, deadline: _Deadline | None) -> bytes:
    if deadline is None:
        return connection.recv_bytes(_HANDSHAKE_MAXLENGTH)
    (size,) = _HEADER.unpack(_read_by(connection, 4, deadline, in_message=False))
    if not 0 <= size <= _HANDSHAKE_MAXLENGTH:
        connection._bad_message_length()  # raises OSError, as recv_bytes(maxlength) does
    return _read_by(connection, size, deadline)


def _read_by(connection: Any, size: int, deadline: _Deadline, in_message: bool = True) -> bytes:
    """Read ``size`` bytes of ``connection`` before ``deadline``, as they trickle in."""
    fd = connection.fileno()
    parts, got = [], 0
    while got < size:
        remaining = deadline.at - time.monotonic()
        if remaining <= 0 or not wait_readable([fd], remaining):
            raise deadline.expired()
        chunk = os.read(fd, size - got)
        if not chunk:
            raise _end_of_file(got, in_message)
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _deliver_challenge(
    connection: Any, authkey: bytes, digest_name: str, deadline: _Deadline | None
) -> None:
    _check_authkey(authkey)
    if digest_name.encode("ascii") not in _ALLOWED_DIGESTS:
        raise ValueError(f"unsupported digest {digest_name!r}")
    mark = _OOB_MARK if getattr(connection, "_oob_capable", False) else b""
    message = b"{%s}%s%s" % (digest_name.encode("ascii"), mark, os.urandom(MESSAGE_LENGTH))
    connection.send_bytes(CHALLENGE + message)
    response = _recv_handshake(connection, deadline)
    try:
        _verify_response(authkey, message, response)
    except AuthenticationError:
        connection.send_bytes(FAILURE)
        raise
    connection.send_bytes(WELCOME)


def _answer_challenge(connection: Any, authkey: bytes, deadline: _Deadline | None) -> None:
    _check_authkey(authkey)
    message = _recv_handshake(connection, deadline)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError(f"protocol error, expected a challenge, got {message[:40]!r}")
    message = message[len(CHALLENGE) :]
    if len(message) < _LEGACY_CHALLENGE_LENGTH:
        raise AuthenticationError(f"challenge too short: {len(message)} bytes")
    connection.send_bytes(_create_response(authkey, message))
    if _recv_handshake(connection, deadline) != WELCOME:
        raise AuthenticationError("digest sent was rejected")
    if getattr(connection, "_oob_capable", False) and message.partition(b"}")[2].startswith(
        _OOB_MARK
    ):
        connection._oob = True  # the challenger is ours and reads out-of-band frames


def deliver_challenge(connection: Any, authkey: bytes, digest_name: str = "sha256") -> None:
    """Challenge the peer of ``connection`` to prove it knows ``authkey``.

    Sends a random challenge, checks the HMAC answer (``digest_name`` or, from
    a legacy peer, MD5) and tells the peer the verdict.

    Raises:
        AuthenticationError: the answer was wrong or malformed.
        ValueError: ``authkey`` is not bytes.
    """
    _deliver_challenge(connection, authkey, digest_name, None)


def answer_challenge(connection: Any, authkey: bytes) -> None:
    """Answer the peer's challenge with the HMAC of ``authkey``.

    Raises:
        AuthenticationError: the challenge was malformed or the peer rejected
            the answer (the two sides have different keys).
        ValueError: ``authkey`` is not bytes.
    """
    _answer_challenge(connection, authkey, None)


# -- xmlrpc serialization (used by managers with serializer='xmlrpclib') ---


class ConnectionWrapper:
    """A connection whose ``send``/``recv`` use ``dumps``/``loads`` instead of pickle."""

    def __init__(
        self, conn: _ConnectionBase, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]
    ) -> None:
        self._conn = conn
        self._dumps = dumps
        self._loads = loads
        self.fileno = conn.fileno
        self.close = conn.close
        self.poll = conn.poll
        self.recv_bytes = conn.recv_bytes
        self.send_bytes = conn.send_bytes

    def send(self, obj: Any) -> None:
        self._conn.send_bytes(self._dumps(obj))

    def recv(self) -> Any:
        return self._loads(self._conn.recv_bytes())


def _xml_dumps(obj: Any) -> bytes:
    import xmlrpc.client

    return xmlrpc.client.dumps((obj,), None, None, None, True).encode("utf-8")


def _xml_loads(data: bytes) -> Any:
    import xmlrpc.client

    (obj,), _method = xmlrpc.client.loads(data.decode("utf-8"))
    return obj


class XmlListener(Listener):
    """A Listener whose connections exchange XML-RPC data instead of pickles."""

    def accept(self) -> ConnectionWrapper:  # type: ignore[override]
        return ConnectionWrapper(Listener.accept(self), _xml_dumps, _xml_loads)


def XmlClient(*args: Any, **kwds: Any) -> ConnectionWrapper:
    """Like Client(), for an XmlListener."""
    return ConnectionWrapper(Client(*args, **kwds), _xml_dumps, _xml_loads)


# -- waiting ---------------------------------------------------------------


def wait(object_list: Iterable[Any], timeout: float | None = None) -> list[Any]:
    """Wait until some objects in ``object_list`` are ready to read.

    Objects may be Connections, sockets, process sentinels, or anything with a
    ``fileno()`` method, and plain file descriptors.  A closed peer counts as
    ready.  ``timeout`` is in seconds; None waits forever, zero or a negative
    value does not wait.

    Returns:
        The ready objects, in the order of ``object_list`` ([] on timeout).
    """
    return wait_readable(list(object_list), timeout)


# -- pickling connections between processes --------------------------------


def reduce_connection(conn: Connection) -> tuple[Callable[..., Connection], tuple]:
    """Reduce a Connection to a duplicate of its descriptor the receiver can fetch.

    While a child is being spawned the descriptor travels with the child's
    start-up data; otherwise the receiving process fetches it from this one's
    resource sharer (``reduction.DupFd`` chooses).
    """
    df = reduction.DupFd(conn.fileno())
    if conn._oob_capable:
        return rebuild_connection, (
            df,
            conn.readable,
            conn.writable,
            conn._serializer,
            conn._oob_capable,
            conn._oob,
        )
    if conn._serializer is None:
        return rebuild_connection, (df, conn.readable, conn.writable)
    return rebuild_connection, (df, conn.readable, conn.writable, conn._serializer)


def rebuild_connection(
    df: Any,
    readable: bool,
    writable: bool,
    serializer: str | None = None,
    oob_capable: bool = False,
    oob: bool = False,
) -> Connection:
    """Rebuild a Connection pickled by :func:`reduce_connection`."""
    c = Connection(df.detach(), readable, writable, serializer=serializer)
    # The same socket: still passes descriptors, still the same peer.
    c._oob_capable, c._oob = oob_capable, oob
    return c


reduction.register(Connection, reduce_connection)
