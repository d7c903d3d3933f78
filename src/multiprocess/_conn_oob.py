"""Large objects through a Connection by memfd: the out-of-band frame (layer 4, Linux).

``Connection.send(obj)`` on a connection whose peer is known to be ours and
whose transport passes descriptors (a duplex ``Pipe()``, or an AF_UNIX
``Listener`` / ``Client`` pair that negotiated it in the authkey handshake)
pickles ``obj`` with protocol 5, and buffers of at least ``FD_MIN_SIZE`` bytes
(numpy arrays, memoryviews, a bytearray sent as such), a pickle that is itself
that large, or a ``bytes`` object sent as such, are copied from their own
memory into memfds (:mod:`._memfd`) whose descriptors cross the socket with
the message (``SCM_RIGHTS``).  The receiver maps them: numpy arrays and
memoryviews use the map as their memory, a bytearray is read out of it, a
bytes object is read out of it in one ``pread``.  One copy where the socket
makes two.  Anything smaller is sent as a plain frame, byte for byte what the
standard library sends.

Frame (after a plain frame's place in the stream)::

    length word -2 (int32, big-endian; the standard library only writes -1
    or a length >= 0), written on its own,
    then in one sendmsg() carrying the descriptors:
    version 1 (uint8), kind (uint8: 0 pickle, 1 bytes object), 2 bytes zero,
    entry count (uint32), one uint64 per entry (big-endian),
    then the bytes of the entries that are not in a memfd, in order.

Entry 0 is the payload (the pickle, or the bytes object), the others the
pickle's out-of-band buffers in order.  An entry's top bit says it is in a
memfd (the next descriptor of the message, in order), the next bit that it
may be used as a map (numpy arrays, memoryviews; others are bytearrays), the
rest is its size.  At most ``MAX_FDS`` memfds per message; further buffers
travel in the stream.  The length word is written alone so that its
segment carries no descriptors: a reader reads the 4-byte word with
``read()`` as for any frame, and only the table with ``recvmsg()``.

Readers.  ``recv()`` rebuilds the object.  ``recv_bytes()`` and
``recv_bytes_into()`` on such a frame get what the standard library's
``send()`` would have sent: an equivalent self-contained pickle (the
out-of-band buffers are put back in it as ``BYTEARRAY8``), so that
``pickle.loads(conn.recv_bytes())`` keeps working.  That costs copies;
``recv()`` is the fast way.

Failures.  Descriptors in flight are owned by the socket: a receiver that
dies before taking them frees them with its end, and nothing is ever in
``/dev/shm``.  A malformed table (unknown version or kind, no entries,
more than ``MAX_ENTRIES``) raises
:class:`OutOfBandFrameError` and leaves the connection unreadable, as a bad
length does (the rest of the stream cannot be framed).  A table that reads
to its end but does not match its descriptors (too few, too many, a memfd of
another size) raises it after the whole frame is consumed: the descriptors
are closed and the connection remains usable.
"""

from __future__ import annotations

import array
import mmap
import os
import pickle
import socket
import struct

from . import _memfd, reduction
from ._errors import _TruncatedMessageError
from ._posix import writev_all

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["FD_MIN_SIZE", "MAX_FDS", "OOB_LENGTH_WORD", "OutOfBandFrameError"]

#: The length word that announces an out-of-band frame.
OOB_LENGTH_WORD = -2
#: Buffers, pickles and bytes objects at least this large go in memfds.
FD_MIN_SIZE = 1 << 20
#: At most this many memfds per message (more buffers go in the stream).
MAX_FDS = 64
#: At most this many entries per frame (a bound on what a table makes us read).
MAX_ENTRIES = 1 << 16

_WORD = struct.Struct("!i")
_TABLE = struct.Struct("!BBxxI")
_ENTRY = struct.Struct("!Q")
_VERSION = 1
_KIND_PICKLE = 0
_KIND_BYTES = 1
_IN_FD = 1 << 63
_MAPPABLE = 1 << 62
_SIZE_MASK = _MAPPABLE - 1

# Test hook: called with the received descriptors before any is mapped.
_fds_received_hook: Callable[[list[int]], None] | None = None


class OutOfBandFrameError(OSError):
    """An out-of-band frame on a connection was malformed."""


# -- sending ---------------------------------------------------------------


def _mappable(view: memoryview) -> bool:
    """Whether the buffer's reconstructor takes any buffer (a map) rather than a bytearray."""
    return _memfd.is_numpy(view.obj) or type(view.obj) is memoryview


def send(conn: Any, obj: Any, serializer: str | None) -> None:
    """Send ``obj`` on ``conn``: as a plain frame if it is small, else as an out-of-band one."""
    buffers: list[memoryview] = []
    if type(obj) is bytes and len(obj) >= FD_MIN_SIZE:
        kind, data = _KIND_BYTES, obj
    else:
        # The C pickler copies a bytearray into the stream; a PickleBuffer of it
        # goes out of band and loads as the bytearray the reader fills.
        payload = obj
        if type(obj) is bytearray and len(obj) >= FD_MIN_SIZE:
            payload = pickle.PickleBuffer(obj)
        data, buffers = reduction.dumps_oob(payload, min_size=FD_MIN_SIZE, serializer=serializer)
        del payload
        if not buffers and len(data) < FD_MIN_SIZE:
            conn._send_frame(memoryview(data))
            return
        kind = _KIND_PICKLE
    if len(buffers) >= MAX_ENTRIES:
        raise ValueError(f"cannot send more than {MAX_ENTRIES - 1} large buffers in one message")
    fds: list[int] = []
    try:
        entries, stream = [], []
        for i, view in enumerate([memoryview(data), *buffers]):
            flat = view if view.format == "B" and view.ndim == 1 else view.cast("B")
            n = flat.nbytes
            flags = _MAPPABLE if i and _mappable(view) else 0
            if n >= FD_MIN_SIZE and len(fds) < MAX_FDS:
                memfd = _memfd.copy_to_memfd(flat, "multiprocess-connection")
                if memfd is not None:
                    fds.append(memfd)
                    entries.append(n | flags | _IN_FD)
                    continue
            # No memfd (ENOMEM, too many): through the socket, as a plain frame would.
            entries.append(n | flags)
            stream.append(flat)
        table = _TABLE.pack(_VERSION, kind, len(entries)) + b"".join(
            _ENTRY.pack(e) for e in entries
        )
        _write_frame(conn, table, stream, fds)
    finally:
        for fd in fds:
            os.close(fd)


def _write_frame(conn: Any, table: bytes, stream: list[memoryview], fds: list[int]) -> None:
    fd = conn.fileno()
    # The length word alone: its segment carries no descriptors, so a
    # reader may read it with read() like any length word.
    conn._write_all(memoryview(_WORD.pack(OOB_LENGTH_WORD)))
    sent = 0
    if fds:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        try:
            # The descriptors ride on the first segment of this call: the table's.
            sent = sock.sendmsg(
                [table], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            )
        finally:
            sock.detach()
    writev_all(fd, [memoryview(table)[sent:], *stream])


# -- receiving -------------------------------------------------------------


class _Frame:
    """A received frame: its kind, entries (size, flags) and their data or memfds."""

    __slots__ = ("entries", "fds", "kind", "parts")

    def __init__(self, kind: int, entries: list[int]) -> None:
        self.kind = kind
        self.entries = entries
        self.parts: list[Any] = []  # stream data, or None for an entry in a memfd
        self.fds: list[int] = []

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)


def _recv_table(conn: Any) -> tuple[bytes, list[int], bool]:
    """Read the fixed part of the table with recvmsg (the descriptors come with it)."""
    fd = conn.fileno()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    fds: list[int] = []
    data = b""
    truncated = False
    try:
        while len(data) < _TABLE.size:
            try:
                chunk, ancdata, flags, _addr = sock.recvmsg(
                    _TABLE.size - len(data),
                    socket.CMSG_SPACE(MAX_FDS * 4),
                    socket.MSG_CMSG_CLOEXEC,
                )
            except BaseException:
                for received in fds:
                    os.close(received)
                raise
            for level, type_, cdata in ancdata:
                if level == socket.SOL_SOCKET and type_ == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(cdata[: len(cdata) - len(cdata) % got.itemsize])
                    fds.extend(got)
            truncated = truncated or bool(flags & socket.MSG_CTRUNC)
            if not chunk:
                for received in fds:
                    os.close(received)
                raise _TruncatedMessageError("got end of file during message")
            data += chunk
    finally:
        sock.detach()
    return data, fds, truncated


def _read_frame(conn: Any) -> _Frame:
    """Read the rest of an out-of-band frame whose length word was just read."""
    head, fds, truncated = _recv_table(conn)
    try:
        version, kind, count = _TABLE.unpack(head)
        if version != _VERSION or kind not in (_KIND_PICKLE, _KIND_BYTES):
            conn._stop_reading(
                OutOfBandFrameError(
                    f"out-of-band frame of version {version}, kind {kind} "
                    "(sent by another multiprocess version?)"
                )
            )
        if not 0 < count <= MAX_ENTRIES:
            conn._stop_reading(OutOfBandFrameError(f"out-of-band frame with {count} entries"))
        # (Sizes are below 2**62: no more than sys.maxsize.  One in the
        # stream is read as it arrives, so a forged one costs only what is sent.)
        entries = [e for (e,) in _ENTRY.iter_unpack(conn._recv_payload(count * _ENTRY.size))]
        frame = _Frame(kind, entries)
        frame.fds, fds = fds, []
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    try:
        # The stream part first: whatever the descriptors say, the
        # connection is then at the next frame.
        for e in entries:
            if e & _IN_FD:
                frame.parts.append(None)
            else:
                frame.parts.append(conn._recv_payload_buffer(e & _SIZE_MASK))
        wanted = sum(1 for e in entries if e & _IN_FD)
        if truncated or len(frame.fds) != wanted:
            raise OutOfBandFrameError(
                f"out-of-band frame announced {wanted} memfds, its message had "
                f"{len(frame.fds)}{' and more' if truncated else ''}"
            )
        for memfd in frame.fds:
            if not _is_memfd(memfd):
                raise OutOfBandFrameError(
                    "out-of-band frame carried a descriptor that is not a memfd"
                )
        if _fds_received_hook is not None:
            _fds_received_hook(list(frame.fds))
    except BaseException:
        frame.close()
        raise
    return frame


def _is_memfd(fd: int) -> bool:
    # A memfd is a regular file: anything else (a socket, a pipe, a tty)
    # could block or lie about its size.
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def _checked_size(fd: int, size: int) -> None:
    if os.fstat(fd).st_size != size:
        raise OutOfBandFrameError("out-of-band frame: memfd of the wrong size")


def _decode_parts(frame: _Frame, for_pickle_bytes: bool = False) -> tuple[Any, list[Any]]:
    """The payload and the buffers of ``frame`` (descriptors are closed by the caller)."""
    fds = iter(frame.fds)
    payload: Any = None
    buffers: list[Any] = []
    for i, (e, part) in enumerate(zip(frame.entries, frame.parts)):
        size = e & _SIZE_MASK
        if part is None:
            fd = next(fds)
            if i == 0 and frame.kind == _KIND_BYTES:
                part = _memfd.read_bytes(fd, size, OutOfBandFrameError)
            elif i == 0:
                # Read once by the unpickler, then unmapped.
                _checked_size(fd, size)
                part = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else b""
            elif e & _MAPPABLE and size and not for_pickle_bytes:
                part = _memfd.map_memfd(fd, size, OutOfBandFrameError)
            else:
                part = _memfd.read_bytearray(fd, size, OutOfBandFrameError)
        elif i and not isinstance(part, bytearray):
            part = bytearray(part)  # a long buffer read in chunks; buffers are writable
        if i == 0:
            payload = part
        else:
            buffers.append(part)
    return payload, buffers


def recv(conn: Any) -> Any:
    """Receive the object of the out-of-band frame whose length word was just read."""
    frame = _read_frame(conn)
    try:
        payload, buffers = _decode_parts(frame)
    finally:
        frame.close()
    if frame.kind == _KIND_BYTES:
        return bytes(payload) if type(payload) is not bytes else payload
    try:
        return reduction.loads(payload, buffers=buffers)
    except EOFError as e:
        raise pickle.UnpicklingError("out-of-band message is not a complete pickle") from e


def recv_in_band(conn: Any) -> bytes:
    """The frame as the plain pickle the standard library would have sent (for recv_bytes)."""
    frame = _read_frame(conn)
    try:
        payload, buffers = _decode_parts(frame, for_pickle_bytes=True)
    finally:
        frame.close()
    if frame.kind == _KIND_BYTES:
        return pickle.dumps(payload, protocol=5)
    return _inline_buffers(bytes(payload), buffers)


def _inline_buffers(data: bytes, buffers: list[Any]) -> bytes:
    """Put out-of-band ``buffers`` back into the pickle ``data`` (NEXT_BUFFER -> BYTEARRAY8).

    FRAME opcodes are dropped (frames are optional, and the inserted bytes
    would break their lengths).  A buffer loaded from BYTEARRAY8 is a
    bytearray, which is what ``recv()`` gives those that are not maps.
    """
    import pickletools

    out: list[Any] = []
    pos = 0
    supply = iter(buffers)
    for opcode, _arg, found in pickletools.genops(data):
        at = found or 0  # (positions are known when reading from bytes)
        if opcode.name == "FRAME":
            out.append(data[pos:at])
            pos = at + 9
        elif opcode.name == "NEXT_BUFFER":
            out.append(data[pos:at])
            buf = next(supply)
            out += [pickle.BYTEARRAY8, struct.pack("<Q", len(buf)), buf]
            pos = at + 1
    out.append(data[pos:])
    return b"".join(out)
