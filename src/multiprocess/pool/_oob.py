"""Large data of a pool's tasks and results, out of band through memfds (layer 5).

A task's arguments, a call's function or a result whose pickle holds large
buffers (numpy arrays, ``pickle.PickleBuffer``) or is large itself crosses
as *segments*: the pickle, then its out-of-band buffers (protocol 5).  Each
segment of at least ``OOB_MIN_SIZE`` bytes is copied once into a memfd by
the sender (the feeder thread for tasks, so not the coordinator's thread;
the worker for results); the receiver maps it.  One copy in all where a
pipe makes two or three, and a memfd made once reaches any number of
workers: a call's function (a ``partial`` over a 200 MB array) is packed
once per function entry (see ``_functions``), a buffer repeated across the
items of one call once per call (``pack``'s memo).

Where: Linux (``_memfd.HAVE_MEMFD``).  Each worker has a *side channel*, a
SEQPACKET socket pair made with its pipes (``side_channel``).  The memfds of
one frame go on it in one message (``SCM_RIGHTS``) *before* the frame, with
a token that the frame repeats (and the number of spare memfds given with
them, below): the reader of the frame finds them there,
and drops the messages of frames that were lost (a sender that died between
the two) by their older tokens.  The coordinator never blocks on a worker:
it sends with ``MSG_DONTWAIT`` and on any error sends the segments inside
the frame instead (``encode``).  Elsewhere nothing changes: tasks and
results are plain pickles in their frames.

Frame parts (see ``_wire``): a task frame with the ``_OOB`` kind bit, and a
result frame that starts with ``RESULT_MARK``, carry a table::

    token (uint64, 0: no descriptors), function segments (uint16),
    payload segments (uint16), one uint64 per segment: its length, with
    _IN_FD (in the message's next descriptor), _MAPPABLE (its buffer, not a
    bytearray copy, goes to the unpickler) and _WHOLE (read whole at once)

then the segments not in descriptors, in order.  Function segments appear
only in a task frame that brings the worker its call's function.

Semantics on the receiving side: a numpy array is backed by the map (shared
with nobody for a task's own buffers and a result; for a function's
buffers, which every worker maps, a copy-on-write map: a worker may write to
its array, as with the standard library's copy, without others seeing it).
Other out-of-band buffers are copied into a ``bytearray``.  A large
``bytes`` object, alone or in a small tuple or list (a task's item, a
result), goes out of band from its own memory too (``_LargeBytes``).  Nothing leaks: a
memfd lives while a descriptor or a map of it does, the sender's descriptors
close with the task or function entry that holds them (and in forked
children at once, see ``Memfd``), and descriptors in flight are freed with
the socket.

Spare memfds (``_memfd``: filling a fresh memfd costs about twice
rewriting one).  Segments read whole (pickles, bytes, bytearrays) are
copied out by the receiver with one read (``_memfd.read_bytes``), never
mapped, so once read nobody needs them.  The pool keeps as its spares, for
its next tasks' copies: a result's memfds (the worker made them for it
alone and closed them) and a task's payload memfds once the task is done
(its worker read them, or died; ``pack``'s ``recycle``).  A worker cannot
recycle a task's memfds (the pool may send a task again after a death), so
the pool gives it one of its spares with each large task, in the same
message (which says how many of its descriptors are such gifts), for the
worker's result; a worker keeps at most ``_MAX_WORKER_SPARES``.  The pool
frees its spares when it ends (join, terminate).
"""

from __future__ import annotations

import array
import itertools
import mmap
import os
import pickle
import socket
import struct
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from .. import reduction, util
from .._memfd import (
    HAVE_MEMFD,
    copy_to_memfd,
    is_numpy,
    keep_spare,
    map_memfd,
    read_bytearray,
    read_bytes,
    recv_fds,
    take_spare,
)

# Whether pools send large data out of band (read when a pool starts; tests
# turn it off to exercise the in-band path that other platforms take).
ENABLED = HAVE_MEMFD
# Buffers and pickles at least this large go in memfds.
OOB_MIN_SIZE = 1 << 20
# First byte of a result frame with segments (a pickle starts with b"\x80").
RESULT_MARK = b"O"

_TABLE = struct.Struct("!QHH")
_IN_FD = 1 << 63
_MAPPABLE = 1 << 62
_WHOLE = 1 << 61  # read whole at once (not a numpy buffer): mapped with its pages
_LENGTH = _WHOLE - 1
# A side channel message: the frame's token, then how many of its descriptors
# (the last ones) are spares given to the worker (``encode``'s ``gifts``).
_MESSAGE = struct.Struct("!QI")
_getpid = os.getpid
# Descriptors per message (the kernel's limit is 253); segments beyond go in band.
_MAX_FDS = 64
# Spares a worker keeps of those the pool gives it (``encode``'s ``gift``).
_MAX_WORKER_SPARES = 2

# Test hook, called in a worker with the descriptors of a frame it received,
# before it maps them (None: nothing).
_on_fds_received: Any = None


class OobError(OSError):
    """A frame's out-of-band segments could not be received."""

    has_function = False  # the frame brought its call's function


class Memfd:
    """One memfd made by this process, closed when this object goes (or ``close()``)."""

    __slots__ = ("__weakref__", "fd", "recycle", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        # Kept as a spare when done with (see ``pack``'s ``recycle``), by
        # this process alone (the pid): a forked child's copy is only closed.
        self.recycle = 0
        # A forked child (a worker started meanwhile) must not keep it alive.
        util.register_after_fork(self, Memfd._forget_in_child)

    def _forget_in_child(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            # (Module globals may be None already at interpreter exit.)
            if self.recycle and _getpid is not None and self.recycle == _getpid():
                keep_spare(fd, self.size)
            else:
                os.close(fd)

    __del__ = close

    def __len__(self) -> int:
        return self.size

    def in_band(self) -> Any:
        """Its bytes, to send in a frame (a read-only map: no copy until written)."""
        return mmap.mmap(self.fd, self.size, prot=mmap.PROT_READ)


class Packed:
    """An object pickled in segments: the pickle, then its out-of-band buffers.

    Each segment is a ``Memfd`` or bytes-like (sent in the frame);
    ``flags[i]`` its _MAPPABLE and _WHOLE bits (see the table).  ``nbytes`` counts the
    memory made for it (not memfds it shares with other payloads).
    """

    __slots__ = ("flags", "nbytes", "segments")

    def __init__(self, segments: list[Any], flags: list[int], nbytes: int) -> None:
        self.segments = segments
        self.flags = flags
        self.nbytes = nbytes


def pack(
    serializer: reduction.Serializer,
    obj: Any,
    memo: dict[int, Any] | None = None,
    recycle: bool = False,
) -> tuple[bytes, Packed | None]:
    """Pickle ``obj``: ``(pickle, None)`` if it is all small, else ``(b"", segments)``.

    ``memo`` (by the buffers' exporters) lets a buffer that many payloads of
    one call share go in one memfd, made once (while tasks that hold it live).
    ``recycle``: the memfds that receivers read whole (not numpy's, which
    they map) become this process's spares once their ``Memfd`` goes: for a
    task's payload, whose ``Memfd`` goes with the last task that holds it,
    after its worker read it (or died).  Never for a result: its receiver
    keeps it (``decode``).
    """
    obj, swapped = _swap_large_bytes(obj)
    data, views = reduction.dumps_oob(obj, min_size=OOB_MIN_SIZE, serializer=serializer)
    if not views and len(data) < OOB_MIN_SIZE:
        return data, None
    segments: list[Any] = [_in_memfd(memoryview(data), None)[0]]
    flags = [_WHOLE]
    if recycle and isinstance(segments[0], Memfd):
        segments[0].recycle = os.getpid()
    nbytes = len(data)
    for view in views:
        segment, shared = _in_memfd(view, memo)
        segments.append(segment)
        if is_numpy(view.obj):
            flags.append(_MAPPABLE)  # an array on the map: touched as it is used
        elif swapped is not None and id(view.obj) in swapped:
            flags.append(_MAPPABLE | _WHOLE)  # copied into bytes by _bytes_of
        else:
            flags.append(_WHOLE)  # copied into a bytearray by decode
        if recycle and flags[-1] & _WHOLE and isinstance(segment, Memfd):
            segment.recycle = os.getpid()
        if not shared:
            nbytes += view.nbytes
    return b"", Packed(segments, flags, nbytes)


class _LargeBytes:
    """Stands for a large ``bytes`` object in a payload: pickled out of band.

    The pickler copies a ``bytes`` object into its stream (and no reducer
    can take its place): this one goes as a protocol 5 buffer from its own
    memory instead, and loads as ``bytes`` again.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _bytes_of, (pickle.PickleBuffer(self.data),)


def _bytes_of(buffer: Any) -> bytes:
    """The ``bytes`` of a received buffer (a map, a view) (see ``_LargeBytes``)."""
    return bytes(buffer)


# Containers looked into for large bytes: two levels of small tuples and
# lists (an item, a chunk, a result), so that small payloads pay next to nothing.
_SWAP_ITEMS = 16


def _swap_large_bytes(obj: Any) -> tuple[Any, set[int] | None]:
    """``obj`` with its large ``bytes`` as ``_LargeBytes``, and their ids (None: none).

    Looks at ``obj`` itself and into two levels of small tuples and lists.
    """
    kind = type(obj)
    if kind is bytes:
        if len(obj) < OOB_MIN_SIZE:
            return obj, None
    elif (kind is tuple or kind is list) and len(obj) <= _SWAP_ITEMS:
        # The common case first, without building anything: nothing large.
        if not _holds_large_bytes(obj):
            return obj, None
    else:
        return obj, None
    swapped: set[int] = set()
    return _swap(obj, swapped, 0), swapped


def _holds_large_bytes(items: Any) -> bool:
    """Whether the tuple or list ``items``, or a small tuple or list in it, holds large bytes."""
    for item in items:
        inner = type(item)
        if inner is bytes:
            if len(item) >= OOB_MIN_SIZE:
                return True
        elif (inner is tuple or inner is list) and len(item) <= _SWAP_ITEMS:
            for x in item:
                if type(x) is bytes and len(x) >= OOB_MIN_SIZE:
                    return True
    return False


def _swap(obj: Any, swapped: set[int], depth: int) -> Any:
    kind = type(obj)
    if kind is bytes:
        if len(obj) < OOB_MIN_SIZE:
            return obj
        swapped.add(id(obj))
        return _LargeBytes(obj)
    if depth < 2 and (kind is tuple or kind is list) and len(obj) <= _SWAP_ITEMS:
        new = [_swap(item, swapped, depth + 1) for item in obj]
        if any(a is not b for a, b in zip(new, obj)):
            return tuple(new) if kind is tuple else new
    return obj


def _in_memfd(view: memoryview, memo: dict[int, Any] | None) -> tuple[Any, bool]:
    """A segment: ``view`` copied into a memfd if large (and one can be made).

    And whether it is a memfd made earlier for another payload (``memo``).
    """
    flat = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    if flat.nbytes < OOB_MIN_SIZE:
        return flat, False
    exporter = view.obj
    if memo is not None:
        known = memo.get(id(exporter))
        if known is not None:
            made, owner = known[0](), known[1]()
            if made is not None and owner is exporter and made.size == flat.nbytes:
                return made, True
    fd = copy_to_memfd(flat, "multiprocess-pool")
    if fd is None:
        return flat, False  # no memory for it: in band, from the object's own memory
    made = Memfd(fd, flat.nbytes)
    if memo is not None:
        # Weakly: the memfd lives while tasks that use it do, the exporter
        # while its owner keeps it (a call over a generator of fresh arrays
        # must not keep them all); a later payload with the same live
        # exporter reuses the memfd.
        try:
            memo[id(exporter)] = (weakref.ref(made), weakref.ref(exporter))
        except TypeError:
            pass  # an exporter without weak references: not shared
    return made, False


def unpack(segments: list[Any]) -> Any:
    """The object of received segments (see ``decode``)."""
    return reduction.loads(segments[0], buffers=segments[1:])


# -- the side channel ----------------------------------------------------------


def side_channel() -> tuple[socket.socket | None, Any]:
    """A worker's side channel: (the pool's end, the worker's end as a Connection)."""
    if not HAVE_MEMFD:
        return None, None
    from ..connection import Connection

    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except OSError:
        return None, None
    return ours, Connection(theirs.detach())


def worker_end(conn: Any) -> Channel | None:
    """The worker's end of its side channel (``conn`` from ``side_channel``), or None."""
    if conn is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, os.dup(conn.fileno()))
    conn.close()
    return Channel(sock)


class Channel:
    """One end of a side channel: sends descriptors, receives those of a frame."""

    __slots__ = ("sock", "tokens")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tokens = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def send(self, fds: list[int], gifts: int = 0) -> int:
        """Send ``fds`` without waiting; their token, or 0 if they could not go.

        The last ``gifts`` of them are spares for the receiver (see ``receive``).
        """
        token = next(self.tokens)
        try:
            self.sock.sendmsg(
                [_MESSAGE.pack(token, gifts)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
                socket.MSG_DONTWAIT,
            )
        except OSError:
            return 0  # full (the peer is slow) or gone: the frame carries the bytes
        return token

    def receive(self, token: int, count: int) -> list[int]:
        """The ``count`` descriptors sent with ``token`` (older messages are dropped)."""
        while True:
            try:
                message, fds = recv_fds(self.sock, _MESSAGE.size, _MAX_FDS)
            except (BlockingIOError, InterruptedError):
                message, fds = b"", []
            if len(message) != _MESSAGE.size:
                _close(fds)
                raise OobError(f"the memfds of a frame (token {token}) did not arrive")
            got, gifts = _MESSAGE.unpack(message)
            if got == token and len(fds) == count + gifts:
                for fd in fds[count:]:
                    # Spare memfds the pool gives this worker for its results:
                    # a few, for a worker whose results are small uses none.
                    keep_spare(fd, os.fstat(fd).st_size, _MAX_WORKER_SPARES)
                return fds[:count]
            _close(fds)
            if got >= token:
                raise OobError(f"the memfds of a frame (token {token}) did not arrive intact")
            # A message whose frame was lost (its sender died in between): skip it.


def _read_memfd(fd: int, size: int, length: int, first: bool, private: bool) -> Any:
    """A segment in the memfd ``fd`` (see ``decode``)."""
    if not length & _WHOLE:
        return map_memfd(fd, size, OobError, private=private)  # a numpy array's memory
    if first or length & _MAPPABLE:
        return read_bytes(fd, size, OobError)  # a pickle, or a large bytes object's
    return read_bytearray(fd, size, OobError)


def _close(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


# -- frames ----------------------------------------------------------------------


def encode(
    channel: Channel | None, func: Packed | None, payload: Packed | None, gift: bool = False
) -> list[Any]:
    """The frame parts of a function's segments (if sent) and a payload's (if any).

    Their memfds go on ``channel`` first, without waiting; if they cannot,
    their bytes go in the frame.  ``gift``: with them goes one of this
    process's spares, if it has one, for the worker's result (a worker
    cannot recycle a task's memfds: the pool may send them again), which
    the worker rewrites instead of making a memfd.
    """
    groups = (func, payload)
    memfds = [s for g in groups if g is not None for s in g.segments if isinstance(s, Memfd)]
    del memfds[_MAX_FDS:]
    token = 0
    if memfds and channel is not None:
        gifts = []
        if gift and len(memfds) < _MAX_FDS:
            spare = take_spare(max(m.size for m in memfds))
            if spare is not None:
                gifts.append(spare)
        token = channel.send([m.fd for m in memfds] + gifts, len(gifts))
        for fd in gifts:
            if token:
                os.close(fd)  # the worker's now
            else:
                keep_spare(fd, os.fstat(fd).st_size)
    sent = len(memfds) if token else 0  # the first ``sent`` memfds, in frame order
    lengths: list[int] = []
    inline: list[Any] = []
    for g in groups:
        if g is None:
            continue
        for segment, flags in zip(g.segments, g.flags):
            if isinstance(segment, Memfd):
                if sent:
                    sent -= 1
                    lengths.append(segment.size | flags | _IN_FD)
                    continue
                segment = segment.in_band()
            inline.append(segment)
            lengths.append(len(segment) | flags)
    counts = [len(g.segments) if g is not None else 0 for g in groups]
    table = _TABLE.pack(token, *counts) + struct.pack(f"!{len(lengths)}Q", *lengths)
    return [table, *inline]


def decode(
    view: memoryview, start: int, channel: Channel | None, private: bool, recycle: bool = False
) -> tuple[list[Any], list[Any], int]:
    """Read a table at ``view[start:]``: (function segments, payload segments, end).

    Memfds of numpy buffers are mapped (``private``: the function's
    copy-on-write), the others read whole into bytes (pickles, large
    ``bytes``) or bytearrays; inline segments are views of ``view``, copied
    into bytearrays unless numpy's.  ``recycle``: the memfds read whole are
    kept as this process's spares (``_memfd.keep_spare``), for frames whose
    sender never sends them again (results).  Raises ``OobError`` if the
    descriptors are missing.
    """
    token, nfunc, nbody = _TABLE.unpack_from(view, start)
    start += _TABLE.size
    n = nfunc + nbody
    lengths = struct.unpack_from(f"!{n}Q", view, start)
    start += 8 * n
    wanted = sum(1 for x in lengths if x & _IN_FD)
    fds: list[int] = []
    if wanted:
        try:
            if channel is None or not token:
                raise OobError("a frame refers to memfds but no side channel carried them")
            fds = channel.receive(token, wanted)
        except OobError as e:
            e.has_function = nfunc > 0
            raise
    try:
        if fds and _on_fds_received is not None:
            _on_fds_received(fds)
        out: list[Any] = []
        in_fds: list[int] = []  # the lengths of the segments in fds, in order
        for i, length in enumerate(lengths):
            size = length & _LENGTH
            first = i == 0 or i == nfunc
            if length & _IN_FD:
                fd = fds[len(in_fds)]
                in_fds.append(length)
                segment = _read_memfd(fd, size, length, first, private and i < nfunc)
            else:
                segment = view[start : start + size]
                start += size
                if length & _MAPPABLE and segment.readonly:
                    segment = bytearray(segment)  # an array of its own, writable
                if not first and not length & _MAPPABLE:
                    segment = bytearray(segment)
            out.append(segment)
        if recycle:
            # Copied out, and their sender made them for this frame alone and
            # closed them: this process's next memfds are written into them.
            for k, length in enumerate(in_fds):
                if length & _WHOLE:
                    fd, fds[k] = fds[k], -1
                    keep_spare(fd, length & _LENGTH)
    finally:
        _close(fds)
    return out[:nfunc], out[nfunc:], start
