"""Each worker's record in shared memory: what it is running, since when (layer 5).

The pool makes one block of shared memory (``heap.BufferWrapper``, what a
``RawArray`` is built on, without ctypes) of int64 numbers, with a slot of ``_FIELDS`` numbers
per worker; each worker is given a slot index (a replacement reuses the slot
of the worker it replaces) and writes to it as it starts each task and each
item of a chunk: plain stores into shared memory, no system call per item.
The coordinator reads the slots when it needs them: to attribute a worker's
death to the item it was running, to see when a running item passes its
``task_timeout``, and to say which item a worker killed for its memory ran.

The fields of a slot:

- ``SEQ``: the number of the task the worker started last, counting from 1
  the task frames it has read (the coordinator counts the frames it sent to
  that worker, so it knows which task that is); negative for a task whose
  items are not tracked (see below).
- ``ITEM``: the index, inside that task's chunk, of the item the worker is
  running (0 for a one-item task), or -1 before the first item (while it
  unpickles the task).  Items run in order, so it is also how many items of
  the task are done.
- ``STARTED``: ``time.monotonic_ns()`` when that item started, for tasks
  with a ``task_timeout`` only (the flag ``_TIMED`` in the task's frame);
  0 when the worker is not running a timed item.
- ``PEAK``: 0, or the worker's peak resident memory in bytes, written just
  before it kills itself for going above the pool's ``memory_limit`` (see
  ``_worker._capped``).

A store into shared memory costs some 50 ns, as much as a tiny function: so
only tracked tasks (the flag ``_TRACKED`` or ``_TIMED``: see ``_Job.track``)
write ``ITEM`` for each item; the others write ``SEQ`` alone, once.  A
tracked task resets ``ITEM`` before it writes ``SEQ``, so that a reader that
sees the new ``SEQ`` sees the reset.  Reads of the
live record are advisory (an item may end as it is read); after a worker's
death they are exact.
"""

from __future__ import annotations

from .. import heap

SEQ, ITEM, STARTED, PEAK = 0, 1, 2, 3
_FIELDS = 4  # a slot is 32 bytes


class _Records:
    """The parent's side: the shared arrays, their free slots, and reads.

    One array of ``slots`` slots at first; an executor that grows past it
    (``get_reusable_executor``) gets another array of the same size for the
    workers it adds, as a worker's array cannot change once it runs.
    """

    __slots__ = ("arrays", "free", "per", "views")

    def __init__(self, slots: int) -> None:
        self.per = max(slots, 1)
        self.arrays: list[heap.BufferWrapper] = []
        self.views: list[memoryview] = []
        self.free: list[int] = []
        self._add_array()

    def _add_array(self) -> None:
        array = heap.BufferWrapper(self.per * _FIELDS * 8)
        first = len(self.arrays) * self.per
        self.arrays.append(array)
        self.views.append(array.create_memoryview().cast("q"))
        self.free.extend(range(first + self.per - 1, first - 1, -1))

    def take(self) -> int:
        """A free slot for a new worker, reset (its number across the arrays)."""
        if not self.free:
            self._add_array()
        slot = self.free.pop()
        view, base = self._where(slot)
        view[base + SEQ] = 0
        view[base + ITEM] = -1
        view[base + STARTED] = 0
        view[base + PEAK] = 0
        return slot

    def give_back(self, slot: int) -> None:
        if slot >= 0:
            self.free.append(slot)

    def _where(self, slot: int) -> tuple[memoryview, int]:
        return self.views[slot // self.per], (slot % self.per) * _FIELDS

    def for_worker(self, slot: int) -> tuple[heap.BufferWrapper, int]:
        """The array and the index in it that the worker of ``slot`` is given."""
        return self.arrays[slot // self.per], slot % self.per

    def read(self, slot: int) -> tuple[int, int, int]:
        """``(seq, item, started)`` of ``slot`` (``(0, -1, 0)`` for a worker without one).

        ``seq`` is positive, ``item`` -1 when the task's items are not tracked.
        """
        if slot < 0:
            return 0, -1, 0
        view, base = self._where(slot)
        seq = view[base + SEQ]
        if seq < 0:
            return -seq, -1, 0
        return seq, view[base + ITEM], view[base + STARTED]

    def peak(self, slot: int) -> int:
        """The peak its worker wrote before it killed itself for its memory, or 0."""
        if slot < 0:
            return 0
        view, base = self._where(slot)
        return view[base + PEAK]


def _worker_view(array: heap.BufferWrapper | None, slot: int) -> tuple[memoryview, int]:
    """The worker's side: a view of the record and the offset of its slot.

    Without a record (a worker started by other code), a private one: the
    stores go nowhere, and the worker's loop stays the same.
    """
    if array is None or slot < 0:
        return memoryview(bytearray(_FIELDS * 8)).cast("q"), 0
    return array.create_memoryview().cast("q"), slot * _FIELDS
