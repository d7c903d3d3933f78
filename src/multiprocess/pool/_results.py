"""What a pool's caller holds while a call runs (layer 5).

``ApplyResult`` (also ``AsyncResult``), ``MapResult``, ``IMapIterator`` and
``IMapUnorderedIterator``: the coordinator fills them with ``_set(index,
(ok, value))``, ends them early with ``_tasks_ended`` or ``_abandon``, and the
caller waits on them, blocking (``get``, ``next``) or from asyncio (``await``,
``async for``, see ``_aio``).  ``_PoolCache`` holds the pending ones by call id.

Cancelling an asyncio task that awaits a result cancels the call
(``_cancel``): the result is settled at once with
``concurrent.futures.CancelledError``, and the engines drop the call's tasks
that no worker has been given yet (they check ``_Job.cancelled``).
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import types
from collections.abc import AsyncIterator, Generator, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from concurrent.futures import CancelledError
    from typing import Any, Callable, Generic, Protocol, TypeVar
else:
    from .._generics import Generic, Protocol, TypeVar

from .. import util
from .._errors import TimeoutError
from .._forklock import FORK_LOCK
from . import _aio
from ._exceptions import _short_repr

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


def _seconds(timeout: Any) -> str:
    try:
        return f"{timeout:g} s"
    except (TypeError, ValueError):
        return f"{timeout!r} s"


class _PoolCache(dict):
    """Pending results by call id; tells the coordinator when it becomes empty."""

    def __init__(self, *args: Any, notifier: Callable[[], None] | None = None, **kwds: Any):
        self.notifier = notifier
        super().__init__(*args, **kwds)

    def __delitem__(self, item: Any) -> None:
        super().__delitem__(item)
        if not self and self.notifier is not None:
            self.notifier()

    def forget(self, job: Any) -> None:
        """Remove ``job`` if present (through __delitem__, so emptiness is noticed)."""
        try:
            del self[job]
        except KeyError:
            pass


_job_counter = itertools.count()


class _ItemFailed:
    """In a ``_PartialChunk``: the item at this place failed with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _PartialChunk(list):
    """The results of a chunk some of whose items failed alone (a worker died,
    timed out or went over its memory limit on them), ``_ItemFailed`` at their places.

    A plain exception raised by an item still fails its whole chunk, as in the
    standard library; this is only for faults the pool isolates per item (see
    ``_Coordinator._isolate``).  Results that can hold one (the chunked imap
    iterators, the executor's map) get it through ``_set_chunk``; the others
    (``MapResult``) fail with the first error.
    """

    def first_error(self) -> BaseException:
        return next(v.error for v in self if type(v) is _ItemFailed)


class _PartialChunkIterator:
    """Iterates a ``_PartialChunk``: a failed item raises its error at its
    place, and ``next()`` goes on with the following items."""

    __slots__ = ("_it",)

    def __init__(self, chunk: _PartialChunk) -> None:
        self._it = iter(chunk)

    def __iter__(self) -> _PartialChunkIterator:
        return self

    def __next__(self) -> Any:
        value = next(self._it)
        if type(value) is _ItemFailed:
            raise value.error
        return value


def _report_callback_error(callback: Any) -> None:
    # A callback runs in a pool thread: its exception cannot reach the caller,
    # and must not stop the pool.  Print it as an unhandled thread error would be.
    sys.stderr.write(f"Exception in callback {_short_repr(callback)} of a pool task:\n")
    with FORK_LOCK:  # not imported at start-up (see _cancelled_error)
        import traceback

    traceback.print_exc()


def _cancelled_error(call: str) -> CancelledError:
    # concurrent.futures (which imports logging and traceback) is imported when
    # first needed, by any thread: a short script's pool does not pay for it.
    with FORK_LOCK:
        from concurrent.futures import CancelledError

    return CancelledError(
        f"{call} was cancelled: the asyncio task awaiting it was cancelled; its tasks "
        f"that no worker had been given were dropped, those already given run to their end "
        f"and their results are discarded"
    )


class ApplyResult(Generic[_T]):
    """The pending result of ``apply_async()`` (also ``AsyncResult``).

    Wait for it with ``get()``, or ``await`` it in a coroutine: see
    ``__await__``.
    """

    # The call, as error messages name it: "apply_async(square)" (see Pool._submit).
    _call = "apply_async()"
    # Set once the awaiting asyncio task was cancelled (see _cancel, _Job.cancelled).
    _cancelled = False
    # The call's progress= (a _progress._Progress), told of each task that ends.
    _progress: Any = None

    def __init__(self, pool: Any, callback: Any, error_callback: Any) -> None:
        self._pool = pool
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._job = next(_job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._settled = False
        self._wakers: list[_aio.Waker] = []  # see _add_waker
        self._cache[self._job] = self

    def ready(self) -> bool:
        """True once the call has completed (successfully or not)."""
        return self._event.is_set()

    def successful(self) -> bool:
        """True if the call completed without raising.

        Raises:
            ValueError: the result is not ready yet.
        """
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready, or ``timeout`` seconds have passed."""
        util.wait_interruptibly(self._event.wait, timeout)

    def get(self, timeout: float | None = None) -> _T:
        """Return the result, or raise the call's exception.

        Raises:
            multiprocess.TimeoutError: not ready within ``timeout`` seconds.
            concurrent.futures.CancelledError: an asyncio task awaiting this
                result was cancelled, and the call with it (see ``__await__``).
        """
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(
                f"the result of {self._call} was not ready after {_seconds(timeout)}"
                f"{self._pending()}; call get() again to wait longer, or terminate() the "
                f"pool to give up on it"
            )
        if self._success:
            return self._value  # type: ignore[no-any-return]
        raise self._value

    def __await__(self) -> Generator[Any, None, _T]:
        """``await result``: the call's value, or its exception raised.

        The event loop goes on meanwhile: no thread waits and nothing polls;
        the pool's thread that completes the result wakes the awaiting task
        through ``loop.call_soon_threadsafe``.  Any asyncio loop will do, and
        several tasks (even on several loops) may await the same result.

        Cancelling the awaiting task cancels the call: ``get()`` raises
        ``concurrent.futures.CancelledError`` from then on (and
        ``error_callback`` is called with it); tasks of the call that no
        worker has been given yet are dropped and never run (of a
        ``map_async``, the chunks still queued); a task that a worker is
        running, or that was already written to a worker's pipe behind a
        short task, runs to its end, and its result is discarded.
        """
        return self._get_async().__await__()

    async def _get_async(self) -> _T:
        if not self._event.is_set():
            await _aio.wait(self._add_waker, self._remove_waker, self._cancel)
        return self.get()

    def _add_waker(self, wake: _aio.Waker) -> None:
        """Call ``wake()`` once the result is ready (now, if it is)."""
        with self._lock:
            if not self._event.is_set():
                self._wakers.append(wake)
                return
        wake()

    def _remove_waker(self, wake: _aio.Waker) -> None:
        with self._lock:
            if wake in self._wakers:
                self._wakers.remove(wake)

    def _cancel(self) -> None:
        """The asyncio task awaiting this result was cancelled: cancel the call."""
        pool = self._pool
        if pool is None:  # done already
            return
        self._cancelled = True  # the engines drop the tasks not given out yet
        self._abandon(_cancelled_error(self._call))
        pool._coordinator.wake()

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
            self._success, self._value = obj
        self._run_callbacks()

    def _run_callbacks(self) -> None:
        if self._progress is not None:
            self._progress.close()  # before the caller wakes up: the bar is closed by then
        callback = self._callback if self._success else self._error_callback
        if callback is not None:
            try:
                callback(self._value)
            except Exception:  # noqa: BLE001 - see _report_callback_error
                _report_callback_error(callback)
        self._forget()
        # Before waking the caller: once it has the result, the result no
        # longer keeps the pool alive (a collected pool's finalizer only
        # asks it to stop, so this may run it here, see _PoolFinalizer).
        self._pool = None
        self._event.set()
        # After the event: a waker added from now on is called by _add_waker.
        with self._lock:
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def _forget(self) -> None:
        self._cache.forget(self._job)

    def _pending(self) -> str:
        """What is still missing, for the timeout message (MapResult counts chunks)."""
        return ""

    def _tasks_ended(self, count: int) -> None:
        """The call's tasks ran out after ``count`` of them (see MapResult)."""

    def _abandon(self, exc: BaseException) -> None:
        """Fail the result with ``exc`` if it is still pending."""
        self._set(0, (False, exc))

    if not TYPE_CHECKING:  # as the standard library's: ApplyResult[int] is a types.GenericAlias
        __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult[list[_T]]):
    """The pending result of ``map_async()`` and ``starmap_async()``.

    Ready when every chunk has come back; if any failed, ``get()`` raises the
    first error.  Awaitable, as ``ApplyResult`` is.
    """

    _call = "map_async()"

    def __init__(
        self, pool: Any, chunksize: int, length: int, callback: Any, error_callback: Any
    ) -> None:
        ApplyResult.__init__(self, pool, callback, error_callback=error_callback)
        self._success = True
        self._value: Any = [None] * length
        self._chunksize = chunksize
        if chunksize <= 0:
            self._number_left = self._planned = 0
            self._event.set()
            self._forget()
        else:
            self._number_left = self._planned = length // chunksize + bool(length % chunksize)

    def _set(self, i: int, success_result: tuple[bool, Any]) -> None:
        if self._progress is not None:
            self._progress.task_done(i, success_result)
        success, result = success_result
        with self._lock:
            if self._number_left <= 0:
                return
            self._number_left -= 1
            if success and self._success:
                self._value[i * self._chunksize : (i + 1) * self._chunksize] = result
            elif not success and self._success:
                # Keep the first error only.
                self._success = False
                self._value = result
            done = self._number_left == 0
        if done:
            self._run_callbacks()

    def _pending(self) -> str:
        return f" ({self._number_left} of {self._planned} chunks still pending)"

    def _tasks_ended(self, count: int) -> None:
        with self._lock:
            missing = self._planned - count
            if missing <= 0 or self._number_left <= 0:
                return
            self._planned = count
            self._number_left -= missing
            done = self._number_left <= 0
        if done:
            self._run_callbacks()

    def _abandon(self, exc: BaseException) -> None:
        with self._lock:
            if self._number_left <= 0:
                return
            self._number_left = 0
            if self._success:
                self._success = False
                self._value = exc
        self._run_callbacks()


class IMapIterator(Generic[_T]):
    """The iterator ``imap()`` returns: results in the order of the inputs.

    A task that failed yields its exception at its place (``next()`` raises
    it); iterating further goes on with the following results.  ``async for``
    iterates it without blocking the event loop: see ``__anext__``.
    """

    _call = "imap()"
    _cancelled = False  # see ApplyResult
    _progress: Any = None  # see ApplyResult

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(_job_counter)
        self._cache = pool._cache
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._index = 0
        self._length: int | None = None
        self._unsorted: dict[int, tuple[bool, Any]] = {}
        self._wakers: list[_aio.Waker] = []  # see _add_waker
        self._cache[self._job] = self

    def __iter__(self) -> IMapIterator[_T]:
        return self

    def next(self, timeout: float | None = None) -> _T:
        """Return the next result, waiting up to ``timeout`` seconds.

        Raises:
            StopIteration: no results left.
            multiprocess.TimeoutError: none arrived in time.
        """
        with self._cond:
            try:
                item = self._items.popleft()
            except IndexError:
                if self._index == self._length:
                    self._pool = None
                    raise StopIteration from None
                util.wait_interruptibly(lambda t: self._cond.wait_for(self._arrived, t), timeout)
                try:
                    item = self._items.popleft()
                except IndexError:
                    if self._index == self._length:
                        self._pool = None
                        raise StopIteration from None
                    raise TimeoutError(
                        f"the next result of {self._call} was not ready after "
                        f"{_seconds(timeout)} ({self._index} result(s) so far); call next() "
                        f"again to wait longer"
                    ) from None
        success, value = item
        if success:
            return value  # type: ignore[no-any-return]
        raise value

    __next__ = next

    def __aiter__(self) -> IMapIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        """The next result, awaited without blocking the event loop.

        As ``next()``: a task that failed raises its exception at its place,
        and iterating further goes on.  Cancelling the awaiting task cancels
        the call, as for ``ApplyResult.__await__``: the tasks not given to a
        worker yet are dropped, and the iterator ends with
        ``concurrent.futures.CancelledError`` after the results that were in.
        """
        while True:
            with self._cond:
                if self._items:
                    success, value = self._items.popleft()
                    break
                if self._index == self._length:
                    self._pool = None
                    raise StopAsyncIteration
            await _aio.wait(self._add_waker, self._remove_waker, self._cancel)
        if success:
            return value  # type: ignore[no-any-return]
        raise value

    def _add_waker(self, wake: _aio.Waker) -> None:
        """Call ``wake()`` once there is a result to take or none left (now, if so)."""
        with self._cond:
            if not self._items and self._index != self._length:
                self._wakers.append(wake)
                return
        wake()

    def _remove_waker(self, wake: _aio.Waker) -> None:
        with self._cond:
            if wake in self._wakers:
                self._wakers.remove(wake)

    def _wake(self) -> None:
        # Called with the lock held, after each change.
        if self._wakers:
            wakers, self._wakers = self._wakers, []
            for wake in wakers:
                wake()

    def _cancel(self) -> None:
        """The asyncio task iterating this was cancelled: cancel the call."""
        pool = self._pool
        if pool is None:  # done already
            return
        self._cancelled = True
        self._abandon(_cancelled_error(self._call))
        pool._coordinator.wake()

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        if self._progress is not None:
            self._progress.task_done(i, obj)
        with self._cond:
            if self._length is not None and i >= self._length:
                return  # abandoned
            if self._index == i:
                self._items.append(obj)
                self._index += 1
                while self._index in self._unsorted:
                    self._items.append(self._unsorted.pop(self._index))
                    self._index += 1
                self._cond.notify()
                self._wake()
            else:
                self._unsorted[i] = obj
            if self._index == self._length:
                self._finish()

    def _arrived(self) -> bool:
        # Called with the lock held: a result to return, or none left to wait for.
        return bool(self._items) or self._index == self._length

    def _set_chunk(self, i: int, chunk: _PartialChunk) -> None:
        """Chunk ``i`` came back with items that failed alone (see ``_PartialChunk``)."""
        self._set(i, (True, chunk))

    def _finish(self) -> None:
        # Called with the lock held.
        if self._progress is not None:
            self._progress.close()
        self._cond.notify_all()
        self._wake()
        self._forget()
        self._pool = None

    def _forget(self) -> None:
        self._cache.forget(self._job)

    def _set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            if self._index == self._length:
                self._finish()

    _tasks_ended = _set_length

    def _abandon(self, exc: BaseException) -> None:
        with self._cond:
            if self._length is not None and self._index >= self._length:
                return
            self._unsorted.clear()
            self._items.append((False, exc))
            self._index += 1
            self._length = self._index
            self._finish()


class IMapUnorderedIterator(IMapIterator[_T]):
    """The iterator ``imap_unordered()`` returns: results as they come."""

    _call = "imap_unordered()"

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        if self._progress is not None:
            self._progress.task_done(i, obj)
        with self._cond:
            if self._length is not None and self._index >= self._length:
                return
            self._items.append(obj)
            self._index += 1
            self._cond.notify()
            self._wake()
            if self._index == self._length:
                self._finish()


class _ChunkedIterator(Generic[_T]):
    """What ``imap()`` and ``imap_unordered()`` return for a chunksize above 1.

    The items of each chunk in turn, from an ``IMapIterator`` of chunks,
    with ``for`` or ``async for``.  As the standard library's generator, it
    ends once it has raised an exception (a chunk that failed).
    """

    def __init__(self, chunks: IMapIterator[list[_T]]) -> None:
        self._chunks = chunks
        self._items: Iterator[_T] = iter(())
        self._ended = False

    def __iter__(self) -> _ChunkedIterator[_T]:
        return self

    def __next__(self) -> _T:
        while True:
            for item in self._items:
                return item
            if self._ended:
                raise StopIteration
            try:
                self._items = _items_of(next(self._chunks))
            except BaseException:
                self._ended = True
                raise

    def __aiter__(self) -> _ChunkedIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        """The next item, awaited without blocking the event loop (see ``IMapIterator``)."""
        while True:
            for item in self._items:
                return item
            if self._ended:
                raise StopAsyncIteration
            try:
                self._items = _items_of(await self._chunks.__anext__())
            except BaseException:
                self._ended = True
                raise


def _items_of(chunk: list[Any]) -> Iterator[Any]:
    """The items of a chunk's results.  A chunk with items that failed alone
    raises their errors at their places, and the iteration goes on after them."""
    if type(chunk) is _PartialChunk:
        return _PartialChunkIterator(chunk)
    return iter(chunk)


class ResultIterator(Protocol[_T_co]):
    """What ``imap()`` and ``imap_unordered()`` return: iterable with ``for`` and ``async for``."""

    def __iter__(self) -> Iterator[_T_co]: ...

    def __next__(self) -> _T_co: ...

    def __aiter__(self) -> AsyncIterator[_T_co]: ...


# Known by the package's name, as before the package was split (see the package docstring).
for _public in (
    ApplyResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
):
    _public.__module__ = "multiprocess.pool"
del _public
