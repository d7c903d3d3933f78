"""The wire format between a pool and its worker processes (layer 5).

Parent to worker: one frame per task (``Connection`` framing), a
``_TASK_HEADER`` (function key, kind, serializer, length of the function
bytes) then the function bytes (absent when the worker already has them)
then the pickled arguments; an empty frame asks the worker to exit.  Worker
to parent: ``_MSG_STARTED``, ``_MSG_READY`` (initializer done), then one
pickled ``(ok, value)`` per task in the order the tasks were sent, or
``(None, exc)`` if the initializer raised.  Large data changes both (a
task's ``_OOB`` bit, a result's ``_oob.RESULT_MARK``): see ``_oob``.

Here are the constants of that format, the frame readers both ends use, and
the non-blocking writes of the coordinator.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from .._posix import advance, first_bytes

# Kinds of task.  The function of an _APPLY task travels with its arguments;
# the others share the function of their call.
_APPLY = 0  # payload: (args, kwds)
_ONE = 1  # payload: one item; func(item)  (imap and imap_unordered, chunksize 1)
_MAP = 2  # payload: a chunk of items; [func(x) for x in chunk]
_STARMAP = 3  # payload: a chunk of argument tuples; [func(*a) for a in chunk]
# Or'ed into the kind of a task whose items the worker records as it starts
# each one (see _record): their index, and with _TIMED also when (the task
# has a task_timeout).  Without either, a chunk runs as list(map(...)): the
# record costs no time per item.
_TRACKED = 0x40
_TIMED = 0x80
# Or'ed into the kind of an executor's task: the worker sends back any
# exception the call raises (SystemExit too), and one raised while pickling
# its result, as the standard library's executor does; a Pool's worker lets
# SystemExit and KeyboardInterrupt end it, as the standard library's Pool does.
_CATCH_ALL = 0x20
# Or'ed into the kind of a task that runs some items of a chunk again (after a
# worker died in it, see _Coordinator._isolate): the chunk's own pickled body
# follows a _COUNT and that many _COUNT offsets, the items to run.  So the
# parent never unpickles what it sent (user code, which may crash or not be
# meant to run there).
_SUBSET = 0x10
# Or'ed into the kind of a task whose frame has a table of out-of-band
# segments (the function's, the payload's: see _oob) before the payload.
_OOB = 0x08
_COUNT = struct.Struct("!I")

# call id, kind, serializer code, length of the function bytes that follow (0: none)
_TASK_HEADER = struct.Struct("!QBBI")
_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")

_SERIALIZER_CODES = {"dill": 0, "pickle": 1, "cloudpickle": 2}
_SERIALIZER_NAMES = {code: name for name, code in _SERIALIZER_CODES.items()}
_DEFAULT_SERIALIZER_CODE = 255  # whatever the worker's environment says

_MSG_STARTED = b"S"
_MSG_READY = b"R"

# How many call functions a worker keeps; the coordinator mirrors the cache.
_FUNCTION_CACHE_SIZE = 16


class _FrameReader:
    """Reads frames in the ``Connection`` wire format from a blocking pipe.

    Small frames that arrive together are taken with one ``read()``; a long
    frame is read straight into a buffer of its size.  Used on both ends of a
    pool's pipes, where messages are many and small.
    """

    __slots__ = ("buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def pop(self) -> Any:
        """The next complete frame already read, or None."""
        buf = self.buf
        n = len(buf)
        if n < 4:
            return None
        (size,) = _LENGTH.unpack_from(buf)
        start = 4
        if size < 0:
            if size != -1:
                raise OSError("bad message length")
            if n < 12:
                return None
            (size,) = _LONG_LENGTH.unpack_from(buf, 4)
            start = 12
        end = start + size
        if end > n:
            if size <= _READ_SIZE:
                return None
            # A long frame: read the rest into a buffer of its size.
            frame = bytearray(size)
            have = n - start
            frame[:have] = buf[start:]
            self.buf = b""
            return self._read_long(frame, have)
        self.buf = buf[end:]
        return buf[start:end]

    def _read_long(self, frame: bytearray, have: int) -> Any:
        """Fill ``frame`` (its first ``have`` bytes are there) and return it."""
        # The peer is writing it now: block until it is complete.
        size = len(frame)
        with memoryview(frame) as view:
            while have < size:
                got = os.readv(self.fd, [view[have : have + (1 << 30)]])
                if not got:
                    raise EOFError("end of file in the middle of a message")
                have += got
        return frame

    def fill(self) -> bool:
        """Read what is there (blocking until something is); False at end of file."""
        chunk = os.read(self.fd, _READ_SIZE)
        if not chunk:
            return False
        self.buf = self.buf + chunk if self.buf else chunk
        return True

    def next(self) -> Any:
        """The next frame, blocking until it is complete (EOFError at end of file)."""
        while True:
            frame = self.pop()
            if frame is not None:
                return frame
            if not self.fill():
                raise EOFError


_READ_SIZE = 65536


class _NonBlockingFrameReader(_FrameReader):
    """A ``_FrameReader`` for a non-blocking pipe, read when it is readable: never waits.

    The coordinator reads each worker's results with one: a long frame is
    filled across calls, so that a worker that dies half-way through writing
    one (while another process may hold a copy of the pipe's write end, so
    that no end of file comes) leaves a partial frame, not a blocked thread.
    """

    __slots__ = ("frame", "have")

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.frame: bytearray | None = None  # the long frame being read
        self.have = 0

    def pop(self) -> Any:
        if self.frame is None:
            return super().pop()
        if self.have < len(self.frame):
            return None
        frame, self.frame = self.frame, None
        return frame

    def _read_long(self, frame: bytearray, have: int) -> Any:
        self.frame, self.have = frame, have
        if not self._fill_long():
            raise EOFError("end of file in the middle of a message")
        return self.pop()

    def _fill_long(self) -> bool:
        frame = self.frame
        assert frame is not None
        size = len(frame)
        with memoryview(frame) as view:
            try:
                while self.have < size:
                    got = os.readv(self.fd, [view[self.have : self.have + (1 << 30)]])
                    if not got:
                        return False
                    self.have += got
            except BlockingIOError:
                pass
        return True

    def fill(self) -> bool:
        """Read what is there now (perhaps nothing); False at end of file."""
        if self.frame is not None:
            return self._fill_long()
        try:
            chunk = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf = self.buf + chunk if self.buf else chunk
        return True


def _frame_parts(out: list[Any], parts: Iterable[Any]) -> int:
    """Append one message in the Connection wire format to ``out``; return its size."""
    # One pass (a frame per task, on the coordinator's hot path): the
    # non-empty parts go in after a place kept for the length prefix.
    at = len(out)
    out.append(b"")
    size = 0
    for p in parts:
        n = len(p)
        if n:
            out.append(p)
            size += n
    if size > 0x7FFFFFFF:
        prefix = _LENGTH.pack(-1) + _LONG_LENGTH.pack(size)
    else:
        prefix = _LENGTH.pack(size)
    out[at] = prefix
    return len(prefix) + size


def _write_some(fd: int, parts: list[Any]) -> list[memoryview]:
    """Write what the non-blocking ``fd`` takes now of ``parts``; return the rest.

    Small messages go in one ``write``; the rest is returned as a list of
    memoryviews (empty when everything was written).
    """
    if sum(len(p) for p in parts) <= 65536:
        data = b"".join(parts)
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        return [memoryview(data)[written:]] if written < len(data) else []
    return _writev_some(fd, [memoryview(p).cast("B") for p in parts if len(p)])


def _writev_some(fd: int, views: list[memoryview]) -> list[memoryview]:
    """Write to the non-blocking ``fd`` what it takes now of ``views``, dropping
    what was written from the list (in place); return the list."""
    try:
        while views:
            advance(views, os.writev(fd, first_bytes(views)))
    except BlockingIOError:
        pass
    return views
