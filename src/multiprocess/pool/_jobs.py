"""Calls and their tasks (layer 5).

A ``_Job`` is one call of the pool's API (``apply_async``, ``map``,
``imap``...): its result, its function, and its inputs, drawn lazily one
task at a time.  A ``_Task`` is one drawn task, pickled, waiting for a worker.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import reduction
from ._exceptions import _callable_name, _pickling_failure, _short_repr
from ._functions import _PickledFunction
from ._oob import Packed
from ._results import _ItemFailed, _PartialChunk
from ._wire import _APPLY, _MAP, _ONE, _STARMAP

# Marks the results of a chunk not known yet (see _ChunkResults).
_MISSING = object()


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[tuple]:
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


class _Job:
    """One call (apply_async, map, imap...): its result, function and inputs.

    ``draw()`` hands out the call's tasks one at a time, lazily, so that an
    imap over a generator reads it only as fast as the workers go.  If the
    inputs raise, the error takes the place of the next task and the call ends.
    """

    __slots__ = (
        "_next",
        "_payloads",
        "_started",
        "api",
        "catch_all",
        "chunksize",
        "done",
        "fentry",
        "first",
        "func",
        "id",
        "kind",
        "oob_memo",
        "result",
        "serializer",
        "slow",
        "timeout",
        "track",
    )

    def __init__(
        self,
        result: Any,
        func: Callable[..., Any],
        kind: int,
        payloads: Iterable[Any],
        api: str,
        chunksize: int = 1,
        serializer: reduction.Serializer | None = None,
        timeout: float | None = None,
        catch_all: bool = False,
        first: int = 0,
    ) -> None:
        self.id = result._job
        self.result = result
        self.func = func
        self.kind = kind
        self.serializer = serializer
        self.api = api
        self.chunksize = chunksize
        self._payloads: Any = payloads
        self._next = 0
        self._started = False
        self.done = False
        self.fentry: _PickledFunction | None = None
        self.timeout = timeout  # seconds an item may run (None: no limit)
        # Its workers record each item of a chunk as it starts (see _record):
        # with a timeout or a memory limit, or once its items prove slow
        # (``slow`` counts its tasks whose items took long on average).
        self.track = timeout is not None
        self.slow = 0
        # An executor's call: every exception comes back (see _wire._CATCH_ALL).
        self.catch_all = catch_all
        # The index in the whole call of its first item (a part of a call:
        # the executor's map with a buffersize sends each chunk as a job).
        self.first = first
        # The memfds of the large buffers its payloads share, by exporter (see _oob.pack).
        self.oob_memo: dict[int, Any] | None = None

    @property
    def cancelled(self) -> bool:
        """The call was cancelled (``ApplyResult._cancel``): drop its tasks not given out yet."""
        return self.result._cancelled  # type: ignore[no-any-return]

    def draw(self) -> tuple[int, Any] | None:
        """Return ``(index, payload)`` of the next task, or None when there are no more."""
        if self._payloads is None:
            return None
        if self.result._cancelled:
            # Its result is settled already: draw nothing more.
            self._payloads = None
            self.done = True
            return None
        index = self._next
        try:
            if not self._started:
                # iter() here, not in the caller: its errors are the first task's.
                self._started = True
                self._payloads = iter(self._payloads)
            payload = next(self._payloads)
        except StopIteration:
            self.end(index)
            return None
        except Exception as e:  # noqa: BLE001 - the inputs' error is the caller's
            self.fail(index, e)
            return None
        self._next = index + 1
        return index, payload

    def end(self, count: int) -> None:
        self._payloads = None
        self.done = True
        self.result._tasks_ended(count)

    def fail(self, index: int, exc: BaseException) -> None:
        """Fail task ``index`` with ``exc`` and issue no more tasks."""
        self._payloads = None
        self.done = True
        self.result._set(index, (False, exc))
        self.result._tasks_ended(index + 1)

    def position(self, index: int, offset: int) -> int:
        """The index in the whole call of item ``offset`` of chunk ``index`` (map, starmap)."""
        return self.first + index * self.chunksize + offset

    def describe(self, index: int, offset: int | None = None) -> str:
        """Which part of the call task ``index`` is (its item ``offset``, if given), for errors."""
        name = _callable_name(self.func)
        if self.kind == _APPLY:
            return f"{self.api}({name})"
        if self.kind == _ONE:
            return f"item {index} of the iterable passed to {self.api}({name})"
        if offset is not None and (self.kind == _MAP or self.kind == _STARMAP):
            position = self.position(index, offset)
            return f"item {position} of the iterable passed to {self.api}({name})"
        first = index * self.chunksize
        return (
            f"items {first}-{first + self.chunksize - 1} of the iterable passed "
            f"to {self.api}({name})"
        )


class _Task:
    __slots__ = ("body", "entry", "index", "job", "oob", "redo", "shown", "size")

    def __init__(
        self, job: _Job, index: int, body: bytes, entry: _PickledFunction, oob: Packed | None = None
    ) -> None:
        self.job = job
        self.index = index
        self.body = body  # the pickled payload (a re-run's: its chunk's)
        # Or, if large, its segments (see _oob; then body is empty).
        self.oob = oob
        self.entry = entry  # the pickled function
        # Set on a task that re-runs what is left of a chunk after one of its
        # items failed (see _Coordinator._isolate): which items, and the chunk.
        self.redo: _Redo | None = None
        self.size = 1  # how many items (of a chunk: its length)
        # Short reprs of its items (of an apply: its arguments), for the errors
        # of timeouts and memory limits; made as it is pickled, only for calls
        # that have either (see _Coordinator._pickle_task).
        self.shown: tuple[str, ...] | None = None

    @property
    def nbytes(self) -> int:
        """The size of its payload, pickled (in band or not)."""
        return len(self.body) if self.oob is None else self.oob.nbytes


class _Redo:
    """What a re-run task carries: where its items sit in the original chunk.

    ``offsets[i]`` is the place in the chunk of the task's item ``i``;
    ``chunk`` is shared by every re-run of the chunk.
    """

    __slots__ = ("chunk", "offsets")

    def __init__(self, offsets: list[int], chunk: _ChunkResults) -> None:
        self.offsets = offsets
        self.chunk = chunk

    def done(self, job: _Job, index: int, ok: bool, value: Any) -> None:
        """The outcome of this re-run (of chunk ``index`` of ``job``) came: complete the chunk."""
        chunk = self.chunk
        if chunk.done:
            return
        if not ok:
            # An item raised: as in the standard library, the chunk fails as one.
            chunk.done = True
            job.result._set(index, (False, value))
            return
        for offset, result in zip(self.offsets, value):
            chunk.values[offset] = result
        chunk.left -= len(self.offsets)
        chunk.finish(job, index)

    def failed(self, job: _Job, index: int, error: BaseException) -> None:
        """This re-run failed as a whole (not by an item's exception): its items fail alone."""
        chunk = self.chunk
        for offset in self.offsets:
            chunk.values[offset] = _ItemFailed(error)
        chunk.left -= len(self.offsets)
        chunk.finish(job, index)


class _ChunkResults:
    """The results of a chunk being completed by re-runs of its items (see ``_Redo``).

    ``values`` holds the results known so far, ``_ItemFailed`` for the items
    that failed alone, and ``_MISSING`` for the others; ``left`` counts
    those; ``done`` is set once the chunk's result was given to the caller.
    """

    __slots__ = ("done", "left", "values")

    def __init__(self, size: int) -> None:
        self.values: list[Any] = [_MISSING] * size
        self.left = size
        self.done = False

    def finish(self, job: _Job, index: int) -> None:
        """Give the caller chunk ``index`` of ``job`` once complete; some of its items failed alone."""
        if self.left > 0 or self.done:
            return
        self.done = True
        values = _PartialChunk(self.values)
        set_chunk = getattr(job.result, "_set_chunk", None)
        if set_chunk is not None:
            set_chunk(index, values)
        else:
            # map(): raises the first error, as for any failed chunk.
            job.result._set(index, (False, values.first_error()))


def _isolate(
    job: _Job,
    index: int,
    redo: _Redo | None,
    size: int,
    k: int,
    error_at: Callable[[int], BaseException],
) -> list[_Redo]:
    """A worker died running item ``k`` (-1: unknown) of chunk ``index`` or of its re-run ``redo``.

    Item ``k`` fails alone (with ``error_at(k)``), and the other items of the
    task must run again (their results died with the worker): the re-runs to
    send, as ``_Redo``s of the chunk.  If ``k`` is unknown, each item runs
    again alone: the one that kills its worker again is then known, and fails
    alone.  ``size`` is the chunk's length.
    """
    offsets = redo.offsets if redo is not None else list(range(size))
    chunk = redo.chunk if redo is not None else _ChunkResults(size)
    count = len(offsets)
    if k < 0 and count == 1:
        k = 0
    k = min(k, count - 1)
    if k < 0:
        return [_Redo([offset], chunk) for offset in offsets]
    chunk.values[offsets[k]] = _ItemFailed(error_at(k))
    chunk.left -= 1
    rest = [offset for i, offset in enumerate(offsets) if i != k]
    if not rest:
        chunk.finish(job, index)
        return []
    return [_Redo(rest, chunk)]


def _explain_task_pickling_error(
    job: _Job, index: int, payload: Any, exc: BaseException
) -> BaseException:
    """Find the argument that could not be pickled and say so."""
    dumps = job.serializer.dumps  # type: ignore[union-attr]

    def fails(obj: Any) -> bool:
        try:
            dumps(obj)
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return True
        return False

    where = job.describe(index)
    if job.kind == _APPLY:
        args, kwds = payload
        if fails(job.func):
            return _pickling_failure(exc, f"cannot serialize the function of {where}")
        for i, arg in enumerate(args):
            if fails(arg):
                return _pickling_failure(
                    exc, f"cannot serialize argument {i} ({_short_repr(arg)}) of {where}"
                )
        for key, arg in kwds.items():
            if fails(arg):
                return _pickling_failure(
                    exc,
                    f"cannot serialize keyword argument {key!r} ({_short_repr(arg)}) of {where}",
                )
        return _pickling_failure(exc, f"cannot serialize the arguments of {where}")
    if job.kind == _ONE:
        return _pickling_failure(exc, f"cannot serialize {where} ({_short_repr(payload)})")
    for offset, item in enumerate(payload):
        if fails(item):
            position = index * job.chunksize + offset
            return _pickling_failure(
                exc,
                f"cannot serialize item {position} ({_short_repr(item)}) of the iterable "
                f"passed to {job.api}({_callable_name(job.func)})",
            )
    return _pickling_failure(exc, f"cannot serialize {where}")
