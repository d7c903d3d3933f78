"""Queues between processes (layer 4).

``Queue`` and ``JoinableQueue``: ``put()`` appends the object to a buffer and
returns; a feeder thread (one per process and queue, started by the first
``put``) serializes it with :mod:`multiprocess.reduction` and writes it to a
pipe; ``get()`` reads one record from the pipe and deserializes it::

    put(obj) -> buffer -> [QueueFeederThread] reduction.dumps -> record -> pipe
    get()    <- reduction.loads <------------------------------ record <--'

``SimpleQueue`` has no buffer and no thread: ``put`` writes one Connection
message, ``get`` reads one (its reader end can be read with ``Connection.recv``,
as concurrent.futures does).  Its read lock is recoverable, as below.

Queue wire format: each object is one *record*, a 16-byte header then the
payload, written under the write lock (one ``writev`` unless the pipe fills)::

    magic 0x4D51 (uint16), kind (uint8), flags (uint8), 4 bytes reserved,
    payload length (uint64)

``kind`` 0 is one pickle stream.  ``kind`` 1 is a pickle with out-of-band
buffers (protocol 5; numpy arrays, and a bytearray put as such, of at least
``_OOB_MIN_SIZE`` bytes), written with ``writev`` from the objects' own memory
and read straight into one buffer each, which the object then uses as its
memory (no copy on either side)::

    buffer count (uint32), 4 bytes reserved, pickle length (uint64),
    one uint64 length per buffer, the pickle, the buffers

(the header's payload length counts all of it).  The top bit of a buffer's
length marks a numpy array's buffer: it is read into a private memory map with
huge pages (see ``_allocate``); the others into a bytearray.  ``kind`` 2 is
a bytes object as it is (only in a memfd, below).  Other kinds are reserved.
A partial kind-1 record of a dead writer is dropped like a partial kind-0 one.

Large payloads (Linux).  A pipe moves about 1.5 GiB/s at best: the writer's
copy into 4 KiB pipe pages is the limit.  So the feeder copies payloads of
at least ``_FD_MIN_SIZE`` bytes into memfds (anonymous in-memory files, one
``write`` each, before taking the write lock) and passes the descriptors on
the queue's *side channel*, a SEQPACKET socket pair, in one message
(``SCM_RIGHTS``) sent right after the record, under the write lock:

- a numpy buffer: its length in the kind-1 record has the ``_OOB_IN_FD``
  bit, and the reader maps the memfd (shared, writable) for the array to
  use: one copy in all, where the pipe makes two;
- a whole pickle (kind 0), or a bytes object put as such (kind 2, not
  pickled at all): the record's payload is only the token; the reader maps
  the memfd read-only and unpickles, or reads it into a new bytes object
  (``_memfd.read_bytes``: one copy, no map) and then gives the memfd back
  to the writers on the side channel (``_give_back``), for the next large
  record, which rewrites it instead of filling a new one (about half the
  cost).  The writer closed its descriptor after sending it, so the reader
  is its only holder; a given-back memfd waits in the socket (at most about
  two, the readers' end has the smallest send buffer too) until a writer
  takes it, and is freed with the socket.

Such a record has header flag ``_FLAG_FDS`` and a token (uint64), after the
out-of-band table for kind 1; its message carries the same token.  A message
whose record was lost (its reader was killed after reading the record) is
dropped by the next reader, which skips messages until the token matches.  A
writer killed between the record and its message holds the write lock: the
reader waiting for the message sees it die and drops the record, as for a
partial record.  Nothing can leak: a memfd lives only as long as a
descriptor or map of it, and descriptors in flight in a socket are freed
with the socket.  Memory: the side channel's send buffer is kept to its
minimum, so a writer has at most about two messages in flight that no
reader has taken (then ``send`` waits), besides the memfd it is sending.

Killed producers and consumers.  A producer may die (SIGKILL, OOM killer)
holding the write lock, in the middle of a record; a consumer, holding the
read lock, in the middle of reading one.  The standard library's queue then
hangs: the lock is never released, and a reader waits forever for the rest
of the message (or reads the rest of a record as a header).  Here a block
of shared memory (a :class:`_SharedBlock`) keeps the queue going:

- the pid of the process holding the write lock, and of the one holding the
  read lock (:class:`_OwnedLock`).  A process that waits for a lock whose
  holder has died takes it back, within ``_RECOVERY_INTERVAL`` seconds.
- a *dirty* flag, set when the write lock is taken back from a dead writer
  (or a writer fails in the middle of a record): the pipe may end with a
  partial record.  While it is set nobody writes; the next reader that runs
  dry (in the middle of that record, or between records with an empty pipe)
  has consumed all of it, drops what it read, gives back the record's slot
  of ``maxsize`` and clears the flag.
- a *read-dirty* flag, set when the read lock is taken back from a dead
  reader (or a reader stops in the middle of a record: an exception, ^C),
  and the stream's counters (:class:`_Stream`): the bytes written to the
  pipe, counted by the writers around each (non-blocking) write call; where
  the record being read starts, moved to its end by the reader that gets it;
  and the header of that record, read straight into shared memory.  The next
  reader computes how much of the record the dead one took (bytes written
  minus bytes in the pipe, minus the record's start), skips the rest, gives
  back the record's slot, and reads on from the next record.  Nothing in
  this needs a store between two reads, so the reader may die at any point.

So ``get(timeout=...)`` raises ``queue.Empty`` in time after a producer died
mid-record, and the other producers and consumers go on.  Lost: the record
being written and the objects still in the dead producer's buffer (for a
bounded queue their slots stay taken; for a JoinableQueue their tasks stay
unfinished).  Once a record has started to arrive, ``get`` waits for its end
as long as its writer is alive, even past its timeout.  A consumer killed
while it waits for data loses nothing; one killed in the middle of a
``get()`` loses the object it was reading (its slot is given back, and for a
JoinableQueue it counts as done), and the others get every object after it.
A memfd whose message a dead reader had taken is freed with it; one it had
not taken is dropped by the next reader of a record with memfds (tokens).

Gaps: a consumer killed in the instant between the end of a record and
giving back its slot leaves the slot taken (``qsize()`` one too high); a
consumer and a producer killed at once, the producer in the middle of a
write call, make the next reader drop everything in the pipe.
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import functools
import io
import itertools
import math
import mmap
import os
import pickle
import select
import socket
import struct
import sys
import termios
import threading
import time
import types
import weakref
from queue import Empty, Full

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Generic, TypeVar
else:
    from ._generics import Generic, TypeVar

from . import reduction, util
from ._memfd import HAVE_MEMFD as _HAVE_MEMFD
from ._memfd import IO_CHUNK as _IO_CHUNK
from ._memfd import allocate as _allocate
from ._memfd import copy_to_memfd, map_memfd, read_bytes, recv_fds
from ._memfd import is_numpy as _is_numpy
from ._posix import advance, first_bytes
from ._posix import pid_alive as _pid_alive
from ._spawning import assert_spawning
from .connection import Connection, Pipe
from .synchronize import SEM_VALUE_MAX, _resolve_context, _SharedBlock

_T = TypeVar("_T")

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]

#
# Wire format
#

_PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)
_HEADER = struct.Struct("=HBBxxxxQ")
_HEADER_SIZE = _HEADER.size
# A record no larger than PIPE_BUF is written with one atomic write.
_SMALL_PAYLOAD = _PIPE_BUF - _HEADER_SIZE
_MAGIC = 0x4D51
_KIND_PICKLE = 0
_KIND_OOB = 1
# Kind 2: a bytes object as such, not pickled (only in a memfd, see below).
_KIND_BYTES = 2
# Kind 1 payload: this table (buffer count, pickle length), the buffer lengths
# (uint64 each), the pickle, then the buffers.
_OOB_TABLE = struct.Struct("=IxxxxQ")
_OOB_LEN = struct.Struct("=Q")
# The top bit of a buffer length says that the buffer belongs to a numpy array
# and may be read into a memory map (see _allocate); others are bytearrays.
_OOB_MAPPABLE = 1 << 63
# Buffers at least this large travel out of band (smaller ones are copied into
# the pickle, which is cheaper than a record of their own).
_OOB_MIN_SIZE = 1 << 16
# Buffer length bit: the buffer is not in the pipe but in a memfd passed on
# the queue's side channel (see "Large payloads" in the module docstring).
_OOB_IN_FD = 1 << 62
_OOB_SIZE_MASK = _OOB_IN_FD - 1
# Header flag of a record with memfds: its token (uint64) is the whole payload
# (kinds 0 and 2) or follows the out-of-band table (kind 1), and the same
# token is in the record's message on the side channel.
_FLAG_FDS = 1
_TOKEN = struct.Struct("=Q")
# Numpy buffers, pickles and bytes objects at least this large go through a
# memfd when the queue has a side channel; at most this many per record (the
# rest go through the pipe).
_FD_MIN_SIZE = 1 << 20
_FD_MAX_PER_RECORD = 64
# Side-channel messages are padded to this size: with the smallest send
# buffer the kernel allows, that leaves room for about two messages, which
# bounds the memfds in flight that no reader has taken yet.
_SIDE_MESSAGE_SIZE = 1536
# Pipe capacity asked for on Linux once a large record is written.
_PIPE_SIZE = 1 << 20

# A queue's shared block (see the module docstring): four int32 (the lock
# owners and the flags), four int64 (the stream counters), the read header.
_SHARED_SIZE = 64
# Indices of the int32 in bytes 0-15.
_RLOCK_OWNER = 0
_WLOCK_OWNER = 1
_DIRTY = 2
# Set when the read lock is taken back from a dead reader, cleared by the
# reader that skips what is left of the record it was reading.
_RDIRTY = 3
# Indices of the int64 in bytes 16-47: twice the bytes written to the pipe
# since the queue was made, plus 1 while a write system call is in flight;
# where in that stream the record being read starts (the next record,
# between records).
_WRITTEN = 0
_RSTART = 1
# Bytes 48-63: the header of the record being read, read there by the
# kernel, so that it outlives a reader killed after reading it.
_HEADER_SLOT = 48

# How often a process waiting on a lock, on the rest of a record, or for a
# reader to drop a dead writer's partial record, checks on the others.
_RECOVERY_INTERVAL = 0.2


class _StreamCorrupted(OSError):
    """The queue's pipe holds bytes that are not a record header."""


#
# Queue
#


class Queue(Generic[_T]):
    """A FIFO queue shared between processes (``queue.Queue``'s API).

    Args:
        maxsize: the most objects that may be in the queue; 0 or less means
            no limit (``SEM_VALUE_MAX``).
        ctx: the context; its serializer is the one the queue uses.

    Objects are serialized in the background: an object that cannot be
    serialized is reported through ``_on_queue_feeder_error(e, obj)`` (by
    default the traceback is printed) and dropped, and the queue goes on.
    """

    _notempty: threading.Condition  # made by _reset, which a fork calls again

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        ctx = _resolve_context(ctx)
        if maxsize <= 0:
            maxsize = SEM_VALUE_MAX
        self._maxsize = maxsize
        self._reader, self._writer = Pipe(duplex=False)
        self._side_reader, self._side_writer = _side_channel()
        # Readers try to read first and wait only when the pipe is empty: one
        # system call less per get().  The flag belongs to the pipe's read
        # end, shared by every process that has it, and only readers of this
        # queue (all through _RecordReader) use that end.
        os.set_blocking(self._reader.fileno(), False)
        # Writers never block in a system call either (they wait in poll()),
        # so that the bytes written are always counted (_Stream).
        os.set_blocking(self._writer.fileno(), False)
        self._rlock = ctx.Lock()
        self._wlock = ctx.Lock()
        # Serializes taking back a lock from a dead holder (held for microseconds).
        self._guard = ctx.Lock()
        # Lock owners, flags, stream counters (see the module docstring).
        self._shared = _SharedBlock(_SHARED_SIZE)
        self._sem = ctx.BoundedSemaphore(maxsize)
        self._opid = os.getpid()
        # True: the feeder thread stops quietly when the reader end is gone
        # (set by concurrent.futures).
        self._ignore_epipe = False
        self._serializer: str | None = ctx._serializer
        self._reset()
        util.register_after_fork(self, Queue._after_fork)

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (
            self._ignore_epipe,
            self._maxsize,
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._guard,
            self._shared,
            self._sem,
            self._opid,
            self._serializer,
            self._side_reader,
            self._side_writer,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self._ignore_epipe,
            self._maxsize,
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._guard,
            self._shared,
            self._sem,
            self._opid,
            self._serializer,
            self._side_reader,
            self._side_writer,
        ) = state
        self._reset()
        util.register_after_fork(self, Queue._after_fork)

    def _after_fork(self) -> None:
        util.debug("Queue._after_fork()")
        self._reset(after_fork=True)

    def _reset(self, after_fork: bool = False) -> None:
        """Forget this process's buffer and feeder thread (in a new process)."""
        if after_fork:
            self._notempty._at_fork_reinit()  # type: ignore[attr-defined]
        else:
            self._notempty = threading.Condition(threading.Lock())
        self._buffer: collections.deque = collections.deque()
        self._thread: threading.Thread | None = None
        self._jointhread: util.Finalize | None = None
        self._joincancelled = False
        self._closed = False
        self._close: util.Finalize | None = None
        self._poll = self._reader.poll
        block = memoryview(self._shared.buf)
        shared = block[:16].cast("i")
        self._stream = _Stream(block[16:_HEADER_SLOT].cast("q"), block[_HEADER_SLOT:_SHARED_SIZE])
        self._read_lock = _OwnedLock(
            self._rlock, shared, _RLOCK_OWNER, self._guard, dirty_index=_RDIRTY
        )
        self._write_lock = _OwnedLock(
            self._wlock, shared, _WLOCK_OWNER, self._guard, dirty_index=_DIRTY
        )
        self._reader_state: _RecordReader | None = None

    # -- putting --

    def put(self, obj: _T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``obj`` in the queue.

        Blocks while the queue is full (at most ``timeout`` seconds if given);
        raises ``queue.Full`` if it is still full, ValueError if the queue is
        closed.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not self._sem.acquire(block, timeout):
            raise Full
        with self._notempty:
            if self._thread is None:
                self._start_thread()
            self._buffer.append(obj)
            self._notempty.notify()

    def put_nowait(self, obj: _T) -> None:
        """``put(obj, False)``."""
        return self.put(obj, False)

    # -- getting --

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """Remove and return an object from the queue.

        Blocks until one is available (at most ``timeout`` seconds if given;
        a negative timeout counts as zero); raises ``queue.Empty`` if none
        came, ValueError if the queue is closed.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        deadline = None
        if block and timeout is not None:
            deadline = time.monotonic() + timeout
        if not self._read_lock.acquire(block, timeout):
            raise Empty
        try:
            reader = self._reader_state
            if reader is None:
                # Made on first use: JoinableQueue's discard needs attributes
                # that are not set yet when _reset() runs in __init__.
                reader = self._reader_state = _RecordReader(
                    self._reader, self._write_lock, self._discard(), self._side_reader, self._stream
                )
            try:
                record = reader.read(block, deadline)
            except BaseException:
                # A ^C or an error in the middle of a record leaves the rest
                # of it in the pipe: the next reader skips it, as it does
                # after a reader was killed there.
                self._read_lock._shared[_RDIRTY] = 1
                raise
            if record is None:
                raise Empty
            # Right after the record's end is recorded (in read()): a reader
            # killed between the two leaves the slot taken (qsize() one high).
            self._sem.release()
        finally:
            self._read_lock.release()
        # Deserialize after releasing the lock: other readers need not wait.
        kind, data = record
        if kind == _KIND_PICKLE:
            return _loads(data)
        return _decode(kind, data)

    def get_nowait(self) -> _T:
        """``get(False)``."""
        return self.get(False)

    # -- state --

    def qsize(self) -> int:
        """The approximate number of objects in the queue (NotImplementedError on macOS)."""
        return self._maxsize - self._sem._semlock._get_value()

    def empty(self) -> bool:
        """True if nothing is ready to be read (approximate)."""
        return not self._poll()

    def full(self) -> bool:
        """True if ``maxsize`` objects are in the queue (approximate)."""
        return self._sem._semlock._is_zero()

    # -- shutting down --

    def close(self) -> None:
        """Say that this process will put and get no more.

        The feeder thread writes what is buffered and then closes the pipe; it
        is joined at exit (see ``join_thread``, ``cancel_join_thread``).  On a
        queue this process never put to, there is no feeder and the pipe stays
        open until the queue is collected (``empty()`` still answers), as in
        CPython.
        """
        self._closed = True
        close = self._close
        if close is not None:
            self._close = None
            close()

    def _close_reader(self) -> None:
        _close_all(self._reader, self._side_reader)

    def join_thread(self) -> None:
        """Wait for the feeder thread to flush the buffer (only after ``close()``)."""
        util.debug("Queue.join_thread()")
        if not self._closed:
            raise ValueError(f"Queue {self!r} not closed")
        if self._jointhread is not None:
            self._jointhread()

    def cancel_join_thread(self) -> None:
        """Do not wait for the feeder thread at exit (buffered objects may be lost)."""
        util.debug("Queue.cancel_join_thread()")
        self._joincancelled = True
        if self._jointhread is not None:
            self._jointhread.cancel()

    def _terminate_broken(self) -> None:
        """Close a queue whose reader is gone (used by concurrent.futures)."""
        self._close_reader()
        self.close()
        self.join_thread()

    # -- the feeder thread --

    def _discard(self) -> Callable[[], None]:
        """What to do for an object lost on the way (its writer died or failed)."""
        return self._sem.release

    def _start_thread(self) -> None:
        util.debug("Queue._start_thread()")
        writer = _RecordWriter(
            self._writer,
            self._write_lock,
            self._reader,
            self._read_lock,
            self._side_writer,
            self._stream,
            self._discard(),
        )
        self._thread = threading.Thread(
            target=_feed,
            args=(
                self._buffer,
                self._notempty,
                writer,
                functools.partial(_close_all, self._reader, self._side_reader),
                self._serializer,
                self._ignore_epipe,
                self._on_queue_feeder_error,
                self._discard(),
            ),
            name="QueueFeederThread",
            daemon=True,
        )
        try:
            self._thread.start()
        except BaseException:
            # During interpreter shutdown, threads cannot start.
            self._thread = None
            raise
        if not self._joincancelled:
            self._jointhread = util.Finalize(
                self._thread, _join_feeder, [weakref.ref(self._thread)], exitpriority=-5
            )
        # When the queue is collected, or at exit, tell the feeder to finish.
        self._close = util.Finalize(
            self, _stop_feeder, [self._buffer, self._notempty], exitpriority=10
        )

    @staticmethod
    def _on_queue_feeder_error(e: BaseException, obj: Any) -> None:
        """Called by the feeder thread when ``obj`` cannot be serialized or sent.

        Override (as a staticmethod) to handle the error; the default prints
        the traceback.  The object is dropped; the queue goes on.
        """
        import traceback

        traceback.print_exc()

    if not TYPE_CHECKING:  # as the standard library's: Queue[int] is a types.GenericAlias
        __class_getitem__ = classmethod(types.GenericAlias)


_SENTINEL = object()


def _close_all(*conns: Connection | None) -> None:
    for conn in conns:
        if conn is not None:
            conn.close()


def _side_channel() -> tuple[Connection | None, Connection | None]:
    """A queue's side channel for memfds: (read end, write end), or Nones where unsupported."""
    if not _HAVE_MEMFD:
        return None, None
    try:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except OSError:
        return None, None
    try:
        # The smallest send buffers: few memfds in flight (_SIDE_MESSAGE_SIZE),
        # to the readers and back to the writers (_give_back).
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    except OSError:
        pass
    return Connection(b.detach(), writable=False), Connection(a.detach(), readable=False)


def _join_feeder(thread_ref: weakref.ref[threading.Thread]) -> None:
    util.debug("joining queue thread")
    thread = thread_ref()
    if thread is not None:
        thread.join()
        util.debug("... queue thread joined")
    else:
        util.debug("... queue thread already dead")


def _stop_feeder(buffer: collections.deque, notempty: threading.Condition) -> None:
    util.debug("telling queue thread to quit")
    with notempty:
        buffer.append(_SENTINEL)
        notempty.notify()


def _feed(
    buffer: collections.deque,
    notempty: threading.Condition,
    writer: _RecordWriter,
    close_reader: Callable[[], None],
    serializer: str | None,
    ignore_epipe: bool,
    on_error: Callable[[BaseException, Any], None],
    discard: Callable[[], None],
) -> None:
    """The feeder thread: serialize buffered objects and write them, until the sentinel.

    It holds no reference to the Queue itself, so that collecting the queue
    (which appends the sentinel) ends the thread.
    """
    util.debug("starting thread to feed data to pipe")
    while True:
        with notempty:
            if not buffer:
                notempty.wait()
        while buffer:
            obj = buffer.popleft()
            if obj is _SENTINEL:
                util.debug("feeder thread got sentinel -- exiting")
                close_reader()
                writer.close()
                return
            try:
                # A large bytes object goes as it is, not pickled (no copy).
                if type(obj) is not bytes or not writer.write_bytes(obj):
                    _write_object(writer, obj, serializer)
            except Exception as e:  # noqa: BLE001 - reported through on_error
                if ignore_epipe and getattr(e, "errno", None) == errno.EPIPE:
                    return
                # The process is shutting down: what the thread uses may
                # already be gone.
                if util.is_exiting():
                    util.info("error in queue thread: %s", e)
                    return
                # The object will never arrive: give back its place.
                discard()
                on_error(e, obj)
            del obj


def _write_object(writer: _RecordWriter, obj: Any, serializer: str | None) -> None:
    """Serialize ``obj`` (before taking the write lock) and write its record."""
    # The C pickler keeps a bytearray in the stream; a PickleBuffer of it goes
    # out of band and loads as the bytearray the reader fills.
    payload = obj
    if type(obj) is bytearray and len(obj) >= _OOB_MIN_SIZE:
        payload = pickle.PickleBuffer(obj)
    data, buffers = reduction.dumps_oob(payload, min_size=_OOB_MIN_SIZE, serializer=serializer)
    del payload
    if buffers:
        writer.write_oob(data, buffers)
    else:
        writer.write(data, _KIND_PICKLE)


#
# Joinable queue
#


class JoinableQueue(Queue[_T]):
    """A Queue with ``task_done()`` and ``join()`` (``queue.Queue``'s API).

    An object that cannot be serialized counts as done.
    """

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        ctx = _resolve_context(ctx)
        Queue.__init__(self, maxsize, ctx=ctx)
        self._unfinished_tasks = ctx.Semaphore(0)
        self._cond = ctx.Condition()

    def __getstate__(self) -> tuple[Any, ...]:
        return Queue.__getstate__(self) + (self._cond, self._unfinished_tasks)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        Queue.__setstate__(self, state[:-2])
        self._cond, self._unfinished_tasks = state[-2:]

    def put(self, obj: _T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``obj`` in the queue and count one more unfinished task."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not self._sem.acquire(block, timeout):
            raise Full
        with self._notempty, self._cond:
            if self._thread is None:
                self._start_thread()
            self._buffer.append(obj)
            self._unfinished_tasks.release()
            self._notempty.notify()

    def task_done(self) -> None:
        """Say that one object taken with ``get()`` has been processed.

        Raises ValueError if called more times than there were objects.
        """
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self) -> None:
        """Block until every object put in the queue has been marked done."""
        with self._cond:
            while not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()

    def _discard(self) -> Callable[[], None]:
        sem, cond, unfinished = self._sem, self._cond, self._unfinished_tasks

        def discard() -> None:
            sem.release()
            with cond:
                if unfinished.acquire(False) and unfinished._semlock._is_zero():
                    cond.notify_all()

        return discard


#
# Simple queue
#


class SimpleQueue(Generic[_T]):
    """A queue without buffer or thread: a pipe with a lock at each end.

    ``put`` serializes in the calling thread and writes one Connection message;
    ``get`` reads one.  The read lock is recoverable (see :class:`_OwnedLock`):
    a consumer killed while it waits in ``get`` does not block the others.  A
    producer killed in the middle of a message still leaves the queue stuck,
    as in the standard library; use :class:`Queue` where producers may be
    killed.
    """

    def __init__(self, *, ctx: Any = None) -> None:
        ctx = _resolve_context(ctx)
        self._reader, self._writer = Pipe(duplex=False)
        self._rlock = ctx.Lock()
        self._wlock = ctx.Lock()
        self._guard = ctx.Lock()
        self._shared = _SharedBlock(8)
        self._serializer: str | None = ctx._serializer
        self._make_methods()

    def _make_methods(self) -> None:
        self._poll = self._reader.poll
        shared = memoryview(self._shared.buf).cast("i")
        self._read_lock = _OwnedLock(self._rlock, shared, _RLOCK_OWNER, self._guard)

    def close(self) -> None:
        """Close both ends of the pipe in this process (again is a no-op)."""
        self._reader.close()
        self._writer.close()

    def empty(self) -> bool:
        """True if nothing is ready to be read."""
        return not self._poll()

    def __getstate__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        return (
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._guard,
            self._shared,
            self._serializer,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._guard,
            self._shared,
            self._serializer,
        ) = state
        self._make_methods()

    def get(self) -> _T:
        """Remove and return an object, waiting until there is one."""
        self._read_lock.acquire()
        try:
            data = self._reader.recv_bytes()
        finally:
            self._read_lock.release()
        # Deserialize after releasing the lock: other readers need not wait.
        return reduction.loads(data)

    def put(self, obj: _T) -> None:
        """Put ``obj`` in the queue."""
        data = reduction.dumps(obj, serializer=self._serializer)
        with self._wlock:
            self._writer.send_bytes(data)

    if not TYPE_CHECKING:  # as the standard library's: Queue[int] is a types.GenericAlias
        __class_getitem__ = classmethod(types.GenericAlias)


#
# Locks that survive the death of their holder
#


class _OwnedLock:
    """A lock whose holder's pid is kept in shared memory, so that it can be recovered.

    ``shared[index]`` holds the pid of the process holding ``lock`` through
    this wrapper (0: nobody, or a holder that went round it; negative: the
    lock was just taken back).  A process that waits longer than
    ``_RECOVERY_INTERVAL`` checks that pid; if that process is gone, it
    releases the lock on the dead holder's behalf, under ``guard`` so that
    only one waiter does it, and sets ``shared[dirty_index]`` if given.

    A holder killed between taking the lock and writing its pid, or between
    clearing it and releasing the lock (a few bytecodes), leaves the lock
    held with no pid: a waiter that sees it so for ``_ANONYMOUS_AFTER``
    seconds takes it back too (a live holder is there for microseconds).
    A reused pid still looks alive.
    """

    __slots__ = (
        "_anonymous",
        "_dirty_index",
        "_guard",
        "_guard_stuck",
        "_index",
        "_lock",
        "_shared",
    )

    def __init__(
        self,
        lock: Any,
        shared: memoryview,
        index: int,
        guard: Any,
        dirty_index: int | None = None,
    ) -> None:
        self._lock = lock
        self._shared = shared
        self._index = index
        self._guard = guard
        self._dirty_index = dirty_index
        # (owner value, first seen, last seen) while the lock was held with
        # no pid; and since when the guard could not be taken.
        self._anonymous: tuple[int, float, float] | None = None
        self._guard_stuck: tuple[float, float] | None = None

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Like ``Lock.acquire``; a negative timeout counts as zero."""
        lock = self._lock
        if not lock.acquire(False):
            if not block:
                if not (self._recover() and lock.acquire(False)):
                    return False
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    wait = _RECOVERY_INTERVAL
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    if lock.acquire(True, wait):
                        break
                    if self._recover() and lock.acquire(False):
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
        self._shared[self._index] = _PID
        return True

    def release(self) -> None:
        self._shared[self._index] = 0
        self._lock.release()

    def holder_died(self) -> bool:
        """Recover the lock if it is held by a dead process; True if this call did."""
        return self._recover()

    def _recover(self) -> bool:
        shared, index = self._shared, self._index
        pid = shared[index]
        if pid > 0:
            self._anonymous = None
            if _pid_alive(pid):
                return False
        else:
            # Held (the caller just failed to take it) with no pid: a holder
            # in the few bytecodes around its pid's store, or one killed there.
            # Only observations in a row count (each call follows a failed
            # wait of at most _RECOVERY_INTERVAL).
            now = time.monotonic()
            seen = self._anonymous
            if seen is None or seen[0] != pid or now - seen[2] > 4 * _RECOVERY_INTERVAL:
                self._anonymous = (pid, now, now)
                return False
            self._anonymous = (pid, seen[1], now)
            if now - seen[1] < _ANONYMOUS_AFTER:
                return False
        if not self._take_guard():
            return False
        try:
            if shared[index] != pid:
                return False  # somebody else recovered it meanwhile, or a new holder came
            if self._dirty_index is not None:
                shared[self._dirty_index] = 1
            # A value no holder writes, and another after each recovery: a
            # waiter that decided on the old value does not release it again.
            shared[index] = min(pid, 0) - 1
            try:
                self._lock.release()
            except ValueError:
                pass  # the holder died just after releasing it
        finally:
            self._guard.release()
        self._anonymous = None
        util.info("took back a queue lock held by dead process %d", pid)
        return True

    def _take_guard(self) -> bool:
        """Take the guard; one that stays held for ``_ANONYMOUS_AFTER`` seconds is
        held by a process killed while it recovered a lock: take it back."""
        if self._guard.acquire(True, _RECOVERY_INTERVAL):
            self._guard_stuck = None
            return True
        now = time.monotonic()
        stuck = self._guard_stuck
        if stuck is None or now - stuck[1] > 4 * _RECOVERY_INTERVAL:
            self._guard_stuck = (now, now)
        elif now - stuck[0] < _ANONYMOUS_AFTER:
            self._guard_stuck = (stuck[0], now)
        else:
            self._guard_stuck = None
            try:
                self._guard.release()
            except ValueError:
                pass  # released meanwhile
            util.info("took back a queue guard held for %s s", _ANONYMOUS_AFTER)
        return False


# How long a lock (or guard) may stay held with no live holder recorded
# before a waiter takes it back.
_ANONYMOUS_AFTER = 2.0


# This process's pid, for _OwnedLock.acquire (os.getpid() is a system call).
_PID = os.getpid()


def _update_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_update_pid)


#
# Records on the pipe
#


class _Stream:
    """Where a queue's byte stream stands, kept in shared memory so that a reader
    can take over from one killed in the middle of a record.

    ``counts[_WRITTEN]`` counts the bytes written to the pipe since the queue
    was made, doubled: a writer adds 1 before a write system call and
    replaces it with what the call wrote right after (one load and two
    stores per call).  The pipe's write
    end is non-blocking, so that no call stays in flight (writers wait for
    room in ``poll``).  ``counts[_RSTART]`` is where the record being read
    starts in that stream: the reader moves it to the record's end once it
    has all of it (one store per ``get()``).  ``header`` is the record's
    header, which the reader reads straight into it.

    With the read lock held and no write in flight, readers have taken
    ``written - (bytes in the pipe)`` bytes: a reader killed in the middle of
    a record took that minus ``counts[_RSTART]`` of it, and the header says
    how many are left.  No store is needed between two reads, so a reader
    killed at any instant leaves a state that can be read.
    """

    __slots__ = ("counts", "header")

    def __init__(self, counts: memoryview, header: memoryview) -> None:
        self.counts = counts
        self.header = header

    def taken(self, fd: int, wlock: _OwnedLock) -> int | None:
        """Bytes readers have taken from the pipe (read lock held); None if that
        cannot be known (a writer died in the middle of a write call)."""
        counts = self.counts
        while True:
            written = counts[_WRITTEN]
            queued = _bytes_in_pipe(fd)
            # Consistent if no write call was in flight, nor started meanwhile
            # (each start changes the value).
            if not written & 1 and counts[_WRITTEN] == written:
                return (written >> 1) - queued
            # A write call takes microseconds, unless its writer died in it.
            wlock.holder_died()
            if wlock._shared[_DIRTY] and counts[_WRITTEN] & 1:
                return None
            time.sleep(0.001)

    def restart(self) -> None:
        """All that was written has been read, and nobody writes (the dirty flag
        is set, the read lock held): count from here."""
        counts = self.counts
        written = counts[_WRITTEN] >> 1
        counts[_WRITTEN] = written << 1
        counts[_RSTART] = written


def _bytes_in_pipe(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder, signed=True)


def _wait_writable(fd: int) -> None:
    """Wait until the pipe has room (or has no reader: the next write raises EPIPE)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()


def _clean_empty_pipe(shared: memoryview, stream: _Stream, discard: Callable[[], None]) -> None:
    """Clear the dirty flag: the pipe is empty, nobody writes, the read lock is held.

    A reader that died holding the read lock (``_RDIRTY``) in the middle of a
    record whose writer died too lost that record: give back its slot.
    """
    counts = stream.counts
    if shared[_RDIRTY]:
        written = counts[_WRITTEN]
        if not written & 1 and written >> 1 != counts[_RSTART]:
            stream.restart()
            discard()
        shared[_RDIRTY] = 0
    stream.restart()
    shared[_DIRTY] = 0


class _RecordWriter:
    """Writes records to a queue's pipe (used by the feeder thread)."""

    def __init__(
        self,
        conn: Any,
        wlock: _OwnedLock,
        reader: Any,
        rlock: _OwnedLock,
        side: Connection | None,
        stream: _Stream,
        discard: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._wlock = wlock
        self._reader = reader
        self._rlock = rlock
        self._side = side
        self._counts = stream.counts
        self._stream = stream
        self._discard = discard
        self._pipe_sized = False

    def close(self) -> None:
        _close_all(self._conn, self._side)

    def write_bytes(self, data: bytes) -> bool:
        """Write a large bytes object as a kind-2 record, in a memfd; False if it cannot."""
        return self._write_in_memfd(memoryview(data), _KIND_BYTES)

    def _spare(self) -> int | None:
        """A memfd that a reader gave back (``_give_back``), or None if none waits."""
        side = self._side
        if side is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, side.fileno())
        try:
            message, fds = recv_fds(sock, _TOKEN.size, 1)
        except OSError:
            return None
        finally:
            sock.detach()
        if len(message) == _TOKEN.size and len(fds) == 1 and _TOKEN.unpack(message)[0] == 0:
            return fds[0]
        for fd in fds:
            os.close(fd)
        return None

    def _write_in_memfd(self, view: memoryview, kind: int) -> bool:
        """Write a record whose whole payload is in a memfd; False if it is too small
        or the queue has no side channel or no memfd can be made."""
        if view.nbytes < _FD_MIN_SIZE or self._side is None:
            return False
        memfd = copy_to_memfd(view, "multiprocess-queue", self._spare())
        if memfd is None:
            return False
        try:
            token = _next_token()
            header = _HEADER.pack(_MAGIC, kind, _FLAG_FDS, _TOKEN.size)
            token_view = memoryview(_TOKEN.pack(token))
            self._write_views(header, [token_view], _TOKEN.size, [memfd], token)
        finally:
            os.close(memfd)
        return True

    def write(self, data: bytes, kind: int) -> None:
        size = len(data)
        header = _HEADER.pack(_MAGIC, kind, 0, size)
        if size <= _SMALL_PAYLOAD:
            # One write of at most PIPE_BUF bytes to a blocking pipe: all of
            # it or nothing, so no partial record can be left behind.
            record = header + data
            fd, counts = self._conn.fileno(), self._counts
            self._lock_clean()
            try:
                while True:
                    written = counts[_WRITTEN]
                    counts[_WRITTEN] = written + 1  # a write call in flight (_Stream)
                    try:
                        n = os.write(fd, record)
                    except BlockingIOError:
                        counts[_WRITTEN] = written
                        _wait_writable(fd)  # all or nothing: it did not fit
                        continue
                    except BaseException:
                        counts[_WRITTEN] = written
                        raise
                    counts[_WRITTEN] = written + 2 * n
                    return
            finally:
                self._wlock.release()
        if self._write_in_memfd(memoryview(data).cast("B"), kind):
            # A large pickle went in a memfd: the record in the pipe is only its token.
            return
        if not self._pipe_sized:
            self._grow_pipe()
        self._write_views(header, [memoryview(data).cast("B")], size)

    def write_oob(self, data: bytes, buffers: list[memoryview]) -> None:
        """Write a kind-1 record: the pickle ``data`` and its out-of-band ``buffers``.

        Large numpy buffers are copied into memfds first (outside the write
        lock) when the queue has a side channel; the others go in the pipe.
        """
        fds: list[int] = []
        try:
            lengths = []
            views = [memoryview(data).cast("B")]
            for b in buffers:
                flat = b.cast("B") if b.format != "B" else b
                n = flat.nbytes
                if not _is_numpy(b.obj):
                    lengths.append(n)
                    views.append(flat)
                    continue
                if self._side is not None and n >= _FD_MIN_SIZE and len(fds) < _FD_MAX_PER_RECORD:
                    fd = copy_to_memfd(flat, "multiprocess-queue")
                    if fd is not None:
                        fds.append(fd)
                        lengths.append(n | _OOB_MAPPABLE | _OOB_IN_FD)
                        continue
                lengths.append(n | _OOB_MAPPABLE)
                views.append(flat)
            table = _OOB_TABLE.pack(len(buffers), len(data))
            token = 0
            if fds:
                token = _next_token()
                table += _TOKEN.pack(token)
            table += b"".join(_OOB_LEN.pack(n) for n in lengths)
            views.insert(0, memoryview(table))
            size = sum(v.nbytes for v in views)
            if not self._pipe_sized:
                self._grow_pipe()
            flags = _FLAG_FDS if fds else 0
            header = _HEADER.pack(_MAGIC, _KIND_OOB, flags, size)
            self._write_views(header, views, size, fds, token)
        finally:
            for fd in fds:
                os.close(fd)

    def _grow_pipe(self) -> None:
        """Ask Linux for a bigger pipe: fewer context switches for large records."""
        self._pipe_sized = True
        setsz = getattr(fcntl, "F_SETPIPE_SZ", 1031) if sys.platform == "linux" else None
        if setsz is None:
            return
        try:
            with open("/proc/sys/fs/pipe-max-size", "rb") as f:
                limit = int(f.read())
        except (OSError, ValueError):
            limit = _PIPE_SIZE
        try:
            fcntl.fcntl(self._conn.fileno(), setsz, min(_PIPE_SIZE, limit))
        except OSError:
            pass  # EPERM (user's pipe quota), EBUSY: keep the default size

    def _write_views(
        self,
        header: bytes,
        views: list[memoryview],
        size: int,
        fds: list[int] | None = None,
        token: int = 0,
    ) -> None:
        """Write a record (``header`` then ``views``), then its memfds' message if any."""
        fd = self._conn.fileno()
        wlock = self._wlock
        self._lock_clean()
        try:
            started = False
            try:
                views = [memoryview(header), *views]
                whole = size <= _IO_CHUNK and len(views) <= 256
                while views:
                    n = self._writev(fd, views if whole else first_bytes(views, _IO_CHUNK))
                    if n:
                        started = True
                        views = advance(views, n)
                        whole = False
                if fds:
                    self._send_fds(token, fds)
            except BaseException:
                if started:
                    # Part of the record is out: readers must drop it.
                    wlock._shared[_DIRTY] = 1
                raise
        finally:
            wlock.release()

    def _writev(self, fd: int, views: list[memoryview]) -> int:
        """One counted write call (see _Stream); 0 after waiting for room."""
        counts = self._counts
        written = counts[_WRITTEN]
        counts[_WRITTEN] = written + 1
        try:
            n = os.writev(fd, views)
        except BlockingIOError:
            counts[_WRITTEN] = written
            _wait_writable(fd)
            return 0
        except BaseException:
            counts[_WRITTEN] = written
            raise
        counts[_WRITTEN] = written + 2 * n
        return n

    def _send_fds(self, token: int, fds: list[int]) -> None:
        """Send a record's memfds on the side channel (blocks while two are in flight)."""
        side = self._side
        assert side is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, side.fileno())
        try:
            message = _TOKEN.pack(token).ljust(_SIDE_MESSAGE_SIZE, b"\0")
            sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        finally:
            sock.detach()

    def _lock_clean(self) -> None:
        """Take the write lock, then wait until no dead writer's partial record is left."""
        self._wlock.acquire()
        try:
            if self._wlock._shared[_DIRTY]:
                self._wait_until_clean()
        except BaseException:
            self._wlock.release()
            raise

    def _wait_until_clean(self) -> None:
        """Wait until no partial record of a dead writer is left in the pipe."""
        shared = self._wlock._shared
        while shared[_DIRTY]:
            # With no reader at work, check the pipe ourselves: taking the
            # read lock puts us between records, so an empty pipe is clean.
            if not self._reader.closed and self._rlock.acquire(False):
                try:
                    if not _readable(self._reader.fileno(), 0):
                        _clean_empty_pipe(shared, self._stream, self._discard)
                finally:
                    self._rlock.release()
            if shared[_DIRTY]:
                time.sleep(_RECOVERY_INTERVAL / 4)


class _RecordReader:
    """Reads one record from a queue's pipe (the read lock is held)."""

    def __init__(
        self,
        conn: Any,
        wlock: _OwnedLock,
        discard: Callable[[], None],
        side: Connection | None,
        stream: _Stream,
    ) -> None:
        self._fd = conn.fileno()
        self._side = side
        # One poller for the reader's life: building one per get() costs more
        # than the poll itself.
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        self._poll = poller.poll
        self._wlock = wlock
        self._shared = wlock._shared
        self._discard = discard
        self._stream = stream
        self._counts = stream.counts
        # The header is read into shared memory, where it outlives this
        # process (_Stream); FileIO.readinto is the quickest way there (it
        # returns None instead of raising when the pipe is empty).
        self._readinto = io.FileIO(self._fd, "rb", closefd=False).readinto

    def read(self, block: bool, deadline: float | None) -> tuple[int, Any] | None:
        """Return ``(kind, payload)``, or None if no record started in time.

        Partial records left by dead writers are dropped, calling ``discard``
        for each, and so is the rest of a record whose reader was killed.
        """
        fd, discard, header = self._fd, self._discard, self._stream.header
        if self._shared[_RDIRTY]:
            self._resync()
        while True:
            got = self._readinto(header)
            if got is None:
                if not self._wait_for_record(block, deadline):
                    return None
                continue
            if got != _HEADER_SIZE:
                if not got:
                    raise EOFError("the queue's pipe is closed")
                if not self._read_into(header[got:]):
                    discard()
                    continue
            magic, kind, flags, size = _HEADER.unpack_from(header)
            if not flags and kind == _KIND_PICKLE and size <= _SMALL_PAYLOAD and magic == _MAGIC:
                # Written with one write of at most PIPE_BUF bytes: atomic,
                # so the payload is already there.
                data = os.read(fd, size)
                if len(data) != size:
                    raise _StreamCorrupted("corrupted queue stream (short record)")
                # The record is ours: the next one starts after it.
                self._counts[_RSTART] += _HEADER_SIZE + size
                return kind, data
            record = self._read_body(fd, magic, kind, flags, size)
            if record is not None:
                return record
            discard()

    def _read_body(
        self, fd: int, magic: int, kind: int, flags: int, size: int
    ) -> tuple[int, Any] | None:
        """The rest of a record whose header was read; None if its writer died midway."""
        if magic != _MAGIC:
            raise _StreamCorrupted(
                "corrupted queue stream (was a process killed while it read from this queue?)"
            )
        payload: Any
        if kind == _KIND_OOB:
            payload = self._read_oob(size, flags)
        elif flags & _FLAG_FDS:
            payload = self._read_in_memfd(size, kind)
        elif size <= _SMALL_PAYLOAD:
            payload = os.read(fd, size)  # atomic, as in read()
            if len(payload) != size:
                raise _StreamCorrupted("corrupted queue stream (short record)")
        else:
            payload = _allocate(size)
            if not self._read_into(memoryview(payload)):
                payload = None
        if payload is None:
            return None
        # The record is ours: the next one starts after it.
        self._counts[_RSTART] += _HEADER_SIZE + size
        return kind, payload

    def _resync(self) -> None:
        """The read lock was taken back from a dead reader: skip the rest of its record.

        The record it was reading is lost with it (its slot is given back);
        the next record is intact.
        """
        shared, stream, counts = self._shared, self._stream, self._counts
        fd = self._fd
        taken = stream.taken(fd, self._wlock)
        if taken is None:
            # A writer died in the middle of a write call too: where the
            # records start cannot be known.  Nobody writes (dirty flag):
            # drop all the pipe holds.
            util.info("dropped a queue's records: a reader and a writer died at once")
            while _drain(fd):
                pass
            self._discard()
            _clean_empty_pipe(shared, stream, lambda: None)
            shared[_RDIRTY] = 0
            return
        start = counts[_RSTART]
        done = taken - start
        if done == 0:
            shared[_RDIRTY] = 0  # it was killed between records
            return
        header = stream.header
        if done < 0:
            raise _StreamCorrupted(f"corrupted queue stream ({-done} bytes read twice?)")
        if done < _HEADER_SIZE:
            # It read part of the header: read the rest where it is.
            if not self._read_into(header[done:]):
                return  # its writer died too: _writer_lost gave the slot back
            done = _HEADER_SIZE
        magic, _kind, _flags, size = _HEADER.unpack_from(header)
        if magic != _MAGIC or done > _HEADER_SIZE + size:
            raise _StreamCorrupted("corrupted queue stream (a reader's state is inconsistent)")
        left = _HEADER_SIZE + size - done
        if left:
            scratch = memoryview(bytearray(min(left, 1 << 16)))
            while left:
                n = min(left, scratch.nbytes)
                if not self._read_into(scratch[:n]):
                    return  # its writer died too: _writer_lost gave the slot back
                left -= n
        # Its memfds' message, if it was not taken, is dropped by the next
        # reader of a record with memfds (by its token).
        counts[_RSTART] = start + _HEADER_SIZE + size
        self._discard()
        shared[_RDIRTY] = 0
        util.info("dropped the rest of a queue record whose reader died (%d bytes)", size)

    def _read_oob(self, size: int, flags: int) -> tuple[bytearray, list[Any]] | None:
        """Read a kind-1 payload of ``size`` bytes; None if its writer died midway.

        Each buffer is read straight into its own buffer (no extra copy);
        those in memfds are mapped.
        """
        table_size = _OOB_TABLE.size + (_TOKEN.size if flags & _FLAG_FDS else 0)
        if size < table_size:
            raise _StreamCorrupted("corrupted queue stream (short out-of-band table)")
        table = bytearray(table_size)
        if not self._read_into(memoryview(table)):
            return None
        count, data_size = _OOB_TABLE.unpack_from(table)
        token = _TOKEN.unpack_from(table, _OOB_TABLE.size)[0] if flags & _FLAG_FDS else None
        if count * _OOB_LEN.size > size:
            raise _StreamCorrupted("corrupted queue stream (bad out-of-band table)")
        lengths_raw = bytearray(_OOB_LEN.size * count)
        if not self._read_into(memoryview(lengths_raw)):
            return None
        lengths = [n for (n,) in _OOB_LEN.iter_unpack(lengths_raw)]
        in_pipe = sum(n & _OOB_SIZE_MASK for n in lengths if not n & _OOB_IN_FD)
        in_fds = sum(1 for n in lengths if n & _OOB_IN_FD)
        if table_size + len(lengths_raw) + data_size + in_pipe != size or (
            (token is None) != (in_fds == 0)
        ):
            raise _StreamCorrupted("corrupted queue stream (bad out-of-band table)")
        data = bytearray(data_size)
        if not self._read_into(memoryview(data)):
            return None
        buffers: list[Any] = []
        for n in lengths:
            if n & _OOB_IN_FD:
                buffers.append(None)  # mapped below
                continue
            if n & _OOB_MAPPABLE:
                buf = _allocate(n & ~_OOB_MAPPABLE)
            else:
                buf = bytearray(n)  # what the buffer's reconstructor expects
            if not self._read_into(memoryview(buf)):
                return None
            buffers.append(buf)
        if token is not None:
            fds = self._receive_fds(token, in_fds)
            if fds is None:
                return None
            try:
                fd_iter = iter(fds)
                for i, n in enumerate(lengths):
                    if n & _OOB_IN_FD:
                        buffers[i] = map_memfd(next(fd_iter), n & _OOB_SIZE_MASK, _StreamCorrupted)
            finally:
                for fd in fds:
                    os.close(fd)
        return data, buffers

    def _read_in_memfd(self, size: int, kind: int) -> Any:
        """Read a payload that is in a memfd; None if lost.

        A pickle: a read-only map of it.  A bytes object (kind 2): the memfd
        itself (``_BytesMemfd``), copied out after the read lock is released.
        """
        if size != _TOKEN.size:
            raise _StreamCorrupted("corrupted queue stream (bad memfd record)")
        token = bytearray(size)
        if not self._read_into(memoryview(token)):
            return None
        fds = self._receive_fds(_TOKEN.unpack(token)[0], 1)
        if fds is None:
            return None
        try:
            length = os.fstat(fds[0]).st_size
            if length == 0:
                raise _StreamCorrupted("corrupted queue stream (empty memfd)")
            if kind == _KIND_BYTES:
                payload = _BytesMemfd(fds[0], length, self._side)
                fds.clear()  # the payload owns it now
                return payload
            # Read once by the unpickler, then dropped.
            return mmap.mmap(fds[0], length, access=mmap.ACCESS_READ)
        finally:
            for fd in fds:
                os.close(fd)

    def _receive_fds(self, token: int, count: int) -> list[int] | None:
        """Receive the memfds of the record with ``token``; None if its writer died first.

        Messages with another token belong to records that were lost (their
        reader was killed after reading them): their memfds are closed.
        """
        side = self._side
        if side is None:
            raise _StreamCorrupted("queue record with memfds, but the queue has no side channel")
        side_fd = side.fileno()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, side_fd)
        try:
            while True:
                try:
                    message, fds = recv_fds(sock, _TOKEN.size, _FD_MAX_PER_RECORD)
                except BlockingIOError:
                    pass
                else:
                    if not message and not fds:
                        raise EOFError("the queue's side channel is closed")
                    if len(message) == _TOKEN.size and _TOKEN.unpack(message)[0] == token:
                        if len(fds) == count:
                            return fds
                        for fd in fds:
                            os.close(fd)
                        raise _StreamCorrupted(
                            f"queue record expected {count} memfds, its message has {len(fds)}"
                        )
                    for fd in fds:
                        os.close(fd)
                    util.info("dropped the memfds of a lost queue record")
                    continue
                # The writer sends the message right after the record, still
                # holding the write lock: wait for it while the writer lives.
                if _readable(side_fd, _RECOVERY_INTERVAL):
                    continue
                if self._writer_lost(lambda timeout: _readable(side_fd, timeout)):
                    # The pipe is between records: the dead record is all read.
                    util.info("dropped a queue record whose memfds never came")
                    return None
        finally:
            sock.detach()

    def _wait_for_record(self, block: bool, deadline: float | None) -> bool:
        """Wait until the pipe is readable; False if it was not in time."""
        shared = self._shared
        while True:
            if not block:
                wait = 0.0
            elif deadline is None:
                wait = _RECOVERY_INTERVAL
            else:
                wait = min(_RECOVERY_INTERVAL, deadline - time.monotonic())
            if self._readable(wait):
                return True
            if shared[_DIRTY]:
                # Between records with an empty pipe: whatever a dead writer
                # left has been read.  Writers may go on.
                _clean_empty_pipe(shared, self._stream, self._discard)
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return False

    def _readable(self, timeout: float) -> bool:
        return bool(self._poll(max(0, math.ceil(timeout * 1000))))

    def _read_into(self, view: memoryview) -> bool:
        """Fill ``view`` from the pipe; False if its writer died before the end."""
        fd = self._fd
        pos, size = 0, view.nbytes
        while pos < size:
            try:
                n = os.readv(fd, [view[pos : pos + _IO_CHUNK]])
            except BlockingIOError:
                pass
            else:
                if n == 0:
                    raise EOFError("the queue's pipe was closed in the middle of a record")
                pos += n
                continue
            if self._readable(_RECOVERY_INTERVAL):
                continue
            # Nothing more for now, in the middle of a record: is its writer alive?
            if self._writer_lost(self._readable):
                util.info("dropped a partial queue record (%d of %d bytes)", pos, size)
                return False
        return True

    def _writer_lost(self, readable: Callable[[float], bool]) -> bool:
        """Called when the rest of a record is late: True if its writer is gone.

        Recovers the write lock if its holder died (which sets the dirty flag).
        With the flag set nobody writes, so if ``readable`` (the pipe, or the
        side channel) has nothing left, all the writer sent has been read: the
        flag is cleared and the caller drops the record.
        """
        shared = self._shared
        if not shared[_DIRTY]:
            self._wlock.holder_died()
        if shared[_DIRTY] and not readable(0) and not _readable(self._fd, 0):
            _clean_empty_pipe(shared, self._stream, self._discard)
            return True
        return False


_token_counter = itertools.count(1)


def _next_token() -> int:
    """A token unique among this queue's records: this process's pid and a counter."""
    return (_PID << 32) | (next(_token_counter) & 0xFFFFFFFF)


_loads = reduction.loads


def _decode(kind: int, data: Any) -> Any:
    if kind == _KIND_PICKLE:
        return _loads(data)
    if kind == _KIND_OOB:
        return reduction.loads(data[0], buffers=data[1])
    if kind == _KIND_BYTES:
        return data.read() if type(data) is _BytesMemfd else bytes(data)
    raise OSError(f"queue record of unknown kind {kind} (written by a newer multiprocess?)")


class _BytesMemfd:
    """A received memfd holding a bytes object put as such (kind 2), owned by the reader.

    ``read()`` copies it into a bytes object (one copy, no map) and gives the
    memfd back to the queue's writers on the side channel (``_give_back``).
    """

    __slots__ = ("fd", "side", "size")

    def __init__(self, fd: int, size: int, side: Connection | None) -> None:
        self.fd = fd
        self.size = size
        self.side = side

    def read(self) -> bytes:
        fd, self.fd = self.fd, -1
        try:
            data = read_bytes(fd, self.size, _StreamCorrupted)
        except BaseException:
            os.close(fd)
            raise
        _give_back(self.side, fd)
        return data

    def __del__(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _give_back(side: Connection | None, fd: int) -> None:
    """Send a memfd that this reader alone holds, and has copied out, back to the writers.

    A writer rewrites it in place (``_RecordWriter._spare``), which costs
    about half of filling a new one.  Without waiting: if the way back is
    full (the reader's end has the smallest send buffer, so at most about
    two memfds wait there) or closed, the memfd is closed.  Nothing leaks:
    a memfd in flight is freed with the socket.
    """
    try:
        if side is not None and not side.closed:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, side.fileno())
            try:
                sock.sendmsg(
                    [_TOKEN.pack(0).ljust(_SIDE_MESSAGE_SIZE, b"\0")],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                    socket.MSG_DONTWAIT,
                )
            finally:
                sock.detach()
    except OSError:
        pass
    os.close(fd)


def _drain(fd: int) -> int:
    """Read and drop what the non-blocking ``fd`` holds (at most 64 KiB); bytes read."""
    try:
        return len(os.read(fd, 1 << 16))
    except BlockingIOError:
        return 0


def _readable(fd: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if timeout is None:
        return bool(poller.poll())
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))
