"""What a pool's caller holds while a call runs (layer 5).

``ApplyResult`` (also ``AsyncResult``), ``MapResult``, ``IMapIterator`` and
``IMapUnorderedIterator``: the coordinator fills them with ``_set(index,
(ok, value))``, ends them early with ``_tasks_ended`` or ``_abandon``, and the
caller waits on them.  ``_PoolCache`` holds the pending ones by call id.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import traceback
import types
from typing import Any, Callable

from .._errors import TimeoutError
from ._exceptions import _short_repr


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


def _report_callback_error(callback: Any) -> None:
    # A callback runs in a pool thread: its exception cannot reach the caller,
    # and must not stop the pool.  Print it as an unhandled thread error would be.
    sys.stderr.write(f"Exception in callback {_short_repr(callback)} of a pool task:\n")
    traceback.print_exc()


class ApplyResult:
    """The pending result of ``apply_async()`` (also ``AsyncResult``)."""

    # The call, as error messages name it: "apply_async(square)" (see Pool._submit).
    _call = "apply_async()"

    def __init__(self, pool: Any, callback: Any, error_callback: Any) -> None:
        self._pool = pool
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._job = next(_job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._settled = False
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
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Return the result, or raise the call's exception.

        Raises:
            multiprocess.TimeoutError: not ready within ``timeout`` seconds.
        """
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(
                f"the result of {self._call} was not ready after {_seconds(timeout)}"
                f"{self._pending()}; call get() again to wait longer, or terminate() the "
                f"pool to give up on it"
            )
        if self._success:
            return self._value
        raise self._value

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
            self._success, self._value = obj
        self._run_callbacks()

    def _run_callbacks(self) -> None:
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

    __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The pending result of ``map_async()`` and ``starmap_async()``.

    Ready when every chunk has come back; if any failed, ``get()`` raises the
    first error.
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


class IMapIterator:
    """The iterator ``imap()`` returns: results in the order of the inputs.

    A task that failed yields its exception at its place (``next()`` raises
    it); iterating further goes on with the following results.
    """

    _call = "imap()"

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(_job_counter)
        self._cache = pool._cache
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._index = 0
        self._length: int | None = None
        self._unsorted: dict[int, tuple[bool, Any]] = {}
        self._cache[self._job] = self

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
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
                self._cond.wait(timeout)
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
            return value
        raise value

    __next__ = next

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
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
            else:
                self._unsorted[i] = obj
            if self._index == self._length:
                self._finish()

    def _finish(self) -> None:
        # Called with the lock held.
        self._cond.notify_all()
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


class IMapUnorderedIterator(IMapIterator):
    """The iterator ``imap_unordered()`` returns: results as they come."""

    _call = "imap_unordered()"

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        with self._cond:
            if self._length is not None and self._index >= self._length:
                return
            self._items.append(obj)
            self._index += 1
            self._cond.notify()
            if self._index == self._length:
                self._finish()
