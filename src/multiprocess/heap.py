"""A heap of shared memory: small blocks carved out of mmap'd arenas (layer 4).

``sharedctypes`` allocates every ``Value`` and ``Array`` here, through
:class:`BufferWrapper`.  The pieces::

    BufferWrapper(size)  one block; freed (util.Finalize) when it is collected
         |  malloc / free
    Heap                 best-fit allocator over its arenas; free neighbours
         |               are merged, empty large arenas are given back
    Arena                one memory file, mapped MAP_SHARED

An arena's memory file has no name, so nothing can leak whatever happens to
the process: it is a ``memfd_create`` file on Linux, elsewhere a temporary
file (in ``/dev/shm`` when it has room, else in the process's temp directory)
unlinked as soon as it is created.  How a child sees an arena:

- fork: the child inherits the mapping itself.
- spawn, forkserver: the arena is pickled with the child's start-up data as
  its file descriptor (``reduction.DupFd``, which the launcher passes to the
  child), and the child maps the same file.

The heap's bookkeeping belongs to one process.  A forked child starts with an
empty heap (``os.register_at_fork``): the free space of an inherited arena is
free in the parent too, and both processes would hand it out.

The attribute names of :class:`Heap` (``_lock``, ``_arenas``, ``_len_to_seq``,
``_allocated_blocks``, ``_pending_free_blocks``, ``_n_mallocs``,
``_n_frees``, ``_DISCARD_FREE_SPACE_LARGER_THAN``) are those of the standard
library: CPython's test suite inspects them.
"""

from __future__ import annotations

import bisect
import mmap
import os
import sys
import threading
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from . import reduction, util
from ._forklock import FORK_LOCK
from ._spawning import assert_spawning

__all__ = ["BufferWrapper"]

Block = tuple["Arena", int, int]  # (arena, start, stop): bytes [start, stop) of arena


def _roundup(n: int, alignment: int) -> int:
    # alignment is a power of two
    return (n + alignment - 1) & ~(alignment - 1)


#
# Arenas
#


class Arena:
    """One shared memory file, mapped into this process, that the heap carves up.

    Args:
        size: Its length in bytes.
        fd: An open descriptor of an existing memory file (a child rebuilding an
            arena it was sent); -1 creates a new file.  The arena owns the
            descriptor and closes it when it is collected.

    Attributes:
        size: The length in bytes.
        fd: The descriptor of the memory file (kept open so that the arena can
            be sent to spawned children).
        buffer: The ``mmap`` of the file.
    """

    # Where the memory file goes when memfd_create is not available: a RAM
    # file system if it has room (faster than a disk-backed temp dir).
    _dir_candidates: list[str] = ["/dev/shm"] if sys.platform.startswith("linux") else []

    def __init__(self, size: int, fd: int = -1) -> None:
        if fd == -1:
            fd = self._new_memory_file(size)
        self.size = size
        self.fd = fd
        closer = weakref.finalize(self, os.close, fd)
        # Older typeshed (mypy < 1.20) declares atexit a read-only slot; it is writable.
        closer.atexit = False  # type: ignore[misc, unused-ignore]
        self.buffer = mmap.mmap(fd, size)

    def _new_memory_file(self, size: int) -> int:
        fd = -1
        if hasattr(os, "memfd_create"):
            try:
                fd = os.memfd_create("multiprocess-heap", os.MFD_CLOEXEC)
            except OSError:  # ENOSYS under old kernels and some sandboxes
                fd = -1
        if fd == -1:
            with FORK_LOCK:  # the fallback's module is imported when needed
                import tempfile
            fd, path = tempfile.mkstemp(prefix=f"pym-{os.getpid()}-", dir=self._choose_dir(size))
            os.unlink(path)
        try:
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _choose_dir(self, size: int) -> str:
        for d in self._dir_candidates:
            try:
                st = os.statvfs(d)
            except OSError:
                continue
            if st.f_bavail * st.f_frsize >= size:
                return d
        return util.get_temp_dir()

    def __reduce__(self) -> Any:
        # While a child is being spawned, the launcher passes the descriptor;
        # otherwise the resource sharer of this process hands it out.
        return _rebuild_arena, (self.size, reduction.DupFd(self.fd))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size} fd={self.fd}>"


def _rebuild_arena(size: int, dupfd: Any) -> Arena:
    return Arena(size, dupfd.detach())


#
# The allocator
#


class Heap:
    """A thread-safe best-fit allocator of blocks in shared memory arenas.

    ``malloc(size)`` returns a block ``(arena, start, stop)``; ``free(block)``
    gives it back.  Free blocks are kept by length (``_lengths``, sorted, and
    ``_len_to_seq``) and by both ends (``_start_to_block``,
    ``_stop_to_block``), so that a freed block merges with free neighbours.
    New arenas double in size up to ``_DOUBLE_ARENA_SIZE_UNTIL``; an arena that
    becomes empty is given back if it is at least
    ``_DISCARD_FREE_SPACE_LARGER_THAN`` bytes long (smaller ones are kept for
    reuse, which is cheaper than mapping a new one).
    """

    _alignment = 16  # enough for any ctypes type, long double included

    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024**2
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024**2

    def __init__(self, size: int = mmap.PAGESIZE) -> None:
        self._initial_size = size
        self._reset()
        _live_heaps.add(self)

    def _reset(self) -> None:
        """Forget every arena and block (in a forked child: they are the parent's)."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._size = self._initial_size  # length of the next arena
        self._arenas: list[Arena] = []
        self._lengths: list[int] = []  # sorted lengths of the free blocks
        # Each length maps to its free blocks, a dict used as an ordered set.
        self._len_to_seq: dict[int, dict[Block, None]] = {}
        self._start_to_block: dict[tuple[Arena, int], Block] = {}
        self._stop_to_block: dict[tuple[Arena, int], Block] = {}
        self._allocated_blocks: dict[Arena, set[tuple[int, int]]] = {}
        # Blocks whose free() could not take the lock (see free()).
        self._pending_free_blocks: list[Block] = []
        self._n_mallocs = 0
        self._n_frees = 0

    # -- public API -------------------------------------------------------

    def malloc(self, size: int) -> Block:
        """Return a free block of at least ``size`` bytes, 16-byte aligned.

        Raises:
            ValueError: ``size`` is negative.
            OverflowError: ``size`` is too large.
            OSError: No memory file could be created or mapped.
        """
        _check_size(size)
        if os.getpid() != self._pid:  # a fork that skipped the at-fork hooks
            self._reset()
        size = _roundup(max(size, 1), self._alignment)
        with self._lock:
            self._free_pending_blocks()
            arena, start, stop = self._take_free_block(size)
            end = start + size
            if end < stop:
                self._add_free_block((arena, end, stop))
            self._allocated_blocks[arena].add((start, end))
            self._n_mallocs += 1
        self._drain_pending()
        return (arena, start, end)

    def free(self, block: Block) -> None:
        """Give back a block returned by :meth:`malloc`.

        Blocks that this heap does not know (a parent's, before a fork) are
        ignored.
        """
        # free() runs from finalizers, so the garbage collector may call it
        # while this very thread holds the lock in malloc() or free(): waiting
        # for the lock would deadlock.  A block whose free() cannot take the
        # lock at once is queued; the lock's holder frees the queue before it
        # returns (_drain_pending), and so does the next malloc() or free().
        if not self._lock.acquire(False):
            self._pending_free_blocks.append(block)
            self._drain_pending()  # the holder may have left meanwhile
            return
        try:
            self._free_pending_blocks()
            self._free_block(block)
        finally:
            self._lock.release()
        self._drain_pending()

    # -- internals (called with the lock held, except _drain_pending) -----

    def _drain_pending(self) -> None:
        while self._pending_free_blocks and self._lock.acquire(False):
            try:
                self._free_pending_blocks()
            finally:
                self._lock.release()

    def _free_pending_blocks(self) -> None:
        pending = self._pending_free_blocks
        while pending:
            try:
                block = pending.pop()
            except IndexError:
                break
            self._free_block(block)

    def _free_block(self, block: Block) -> None:
        arena, start, stop = block
        in_use = self._allocated_blocks.get(arena)
        if in_use is None or (start, stop) not in in_use:
            return
        in_use.remove((start, stop))
        self._n_frees += 1
        self._add_free_block(block)
        if not in_use:
            self._discard_arena(arena)

    def _take_free_block(self, size: int) -> Block:
        # The smallest free block that is large enough, or a new arena.
        i = bisect.bisect_left(self._lengths, size)
        if i == len(self._lengths):
            return self._new_arena(size)
        seq = self._len_to_seq[self._lengths[i]]
        block = next(reversed(seq))  # the most recently freed: likely in cache
        self._remove_free_block(block)
        return block

    def _new_arena(self, size: int) -> Block:
        length = _roundup(max(self._size, size), mmap.PAGESIZE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        util.info("allocating a new mmap of length %d", length)
        arena = Arena(length)
        self._arenas.append(arena)
        self._allocated_blocks[arena] = set()
        return (arena, 0, length)

    def _discard_arena(self, arena: Arena) -> None:
        # The arena is empty: one free block spans it.
        if arena.size < self._DISCARD_FREE_SPACE_LARGER_THAN:
            return
        self._remove_free_block((arena, 0, arena.size))
        del self._allocated_blocks[arena]
        self._arenas.remove(arena)
        # The mapping goes when the last reference to the arena does.

    def _add_free_block(self, block: Block) -> None:
        arena, start, stop = block
        before = self._stop_to_block.get((arena, start))
        if before is not None:
            self._remove_free_block(before)
            start = before[1]
        after = self._start_to_block.get((arena, stop))
        if after is not None:
            self._remove_free_block(after)
            stop = after[2]
        block = (arena, start, stop)
        length = stop - start
        seq = self._len_to_seq.get(length)
        if seq is None:
            seq = self._len_to_seq[length] = {}
            bisect.insort(self._lengths, length)
        seq[block] = None
        self._start_to_block[(arena, start)] = block
        self._stop_to_block[(arena, stop)] = block

    def _remove_free_block(self, block: Block) -> None:
        arena, start, stop = block
        del self._start_to_block[(arena, start)]
        del self._stop_to_block[(arena, stop)]
        length = stop - start
        seq = self._len_to_seq[length]
        del seq[block]
        if not seq:
            del self._len_to_seq[length]
            del self._lengths[bisect.bisect_left(self._lengths, length)]


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"Size {size:n} out of range")
    if size >= sys.maxsize:
        raise OverflowError(f"Size {size:n} too large")


_live_heaps: weakref.WeakSet[Heap] = weakref.WeakSet()


def _reset_heaps_in_child() -> None:
    for heap in list(_live_heaps):
        heap._reset()


os.register_at_fork(after_in_child=_reset_heaps_in_child)


#
# Blocks
#


class BufferWrapper:
    """A block of ``size`` bytes of shared memory, freed when this object is collected.

    A forked child inherits the memory; a spawned one gets it by pickling
    (the arena's file descriptor travels with the child's start-up data).
    Pickling it at any other time raises RuntimeError.  Only the process
    that allocated a block frees it.
    """

    _heap = Heap()

    def __init__(self, size: int) -> None:
        _check_size(size)
        heap = self._heap
        block = heap.malloc(size)
        self._state: tuple[Block, int] = (block, size)
        util.Finalize(self, heap.free, args=(block,))

    def create_memoryview(self) -> memoryview:
        """Return a writable memoryview of the block (exactly ``size`` bytes)."""
        (arena, start, _stop), size = self._state
        return memoryview(arena.buffer)[start : start + size]

    def __reduce__(self) -> Any:
        # Like the ctypes objects built on it, the block is shared with
        # children only; a pickle meant for anywhere else would carry a
        # file descriptor that nobody may ever claim.
        assert_spawning(self)
        (arena, start, stop), size = self._state
        return _rebuild_buffer_wrapper, (arena, start, stop, size)


def _rebuild_buffer_wrapper(arena: Arena, start: int, stop: int, size: int) -> BufferWrapper:
    # In the receiving process: the same memory, which this process never frees.
    wrapper = BufferWrapper.__new__(BufferWrapper)
    wrapper._state = ((arena, start, stop), size)
    return wrapper
