"""The public faces: ``Pool`` and ``ThreadPool`` (layer 5).

They check arguments, turn each call into a ``_Job`` with its result, and
hand it to their engine (``_Coordinator`` or ``_ThreadCoordinator``).
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Iterable, Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Literal, TypeVar, overload

    from typing_extensions import Self  # annotations only: not a dependency

from .. import context as _context
from .. import reduction, util
from .._memfd import drop_spares
from . import _progress
from ._coordinator import _Coordinator
from ._exceptions import _callable_name, _short_repr
from ._jobs import _chunks, _Job
from ._limits import _check_timeout, _parse_size, _resolve_timeout
from ._results import (
    ApplyResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
    ResultIterator,
    _ChunkedIterator,
    _PoolCache,
)
from ._threads import _ThreadCoordinator
from ._wire import _APPLY, _MAP, _ONE, _STARMAP

if TYPE_CHECKING:
    _S = TypeVar("_S")
    _T = TypeVar("_T")

#
# States of a pool
#

INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"


def _as_int(value: Any, name: str, alternative: str = "") -> int:
    """``value`` as an int (anything with ``__index__``), or TypeError naming ``name``."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int{' ' + alternative if alternative else ''}, "
            f"not {type(value).__name__} ({_short_repr(value)})"
        ) from None


def _check_chunksize(chunksize: Any, show: Callable[[int], str]) -> int:
    """A valid chunksize as an int; TypeError or ValueError (imap's wording) if not."""
    chunksize = _as_int(chunksize, "chunksize")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {show(chunksize)}")
    return chunksize


def _serializer_of(ctx: Any) -> reduction.Serializer:
    """The serializer of ``ctx``, looked up now (None: the package default)."""
    name = getattr(ctx, "_serializer", None)
    if name is not None and not isinstance(name, (str, reduction.Serializer)):
        name = None  # a context that is not ours
    return reduction.get_serializer(name)


class _PoolFinalizer(util.Finalize):
    """A pool's finalizer (``Pool._terminate``): terminates its coordinator.

    Called by ``terminate()`` or at exit, it waits until the pool has stopped.
    Called by the garbage collector (the pool is gone; ``wr`` is its dead
    weak reference), it must not wait or take a lock: that may happen on any
    thread, e.g. the one setting the last result, which holds that result's
    lock; the coordinator only gets told to stop (``terminate(wait=False)``).
    Nothing can be pending then: every pending result refers to its pool.
    """

    def __call__(self, wr: Any = None, *args: Any, **kwds: Any) -> Any:
        if wr is not None and self._kwargs is not None:
            self._kwargs = {"wait": False}
        return super().__call__(wr, *args, **kwds)


# The pools
#


class Pool:
    """A pool of worker processes that run calls in parallel.

    Args:
        processes: Number of workers; None means ``os.cpu_count()``.
        initializer: Called as ``initializer(*initargs)`` in each worker when
            it starts.  If it raises, the pool is broken: every pending and
            future task fails with :class:`BrokenPoolError`.
        initargs: Arguments of ``initializer``.
        maxtasksperchild: Each worker is replaced after this many tasks
            (None: never).
        context: The context whose start method and serializer the pool uses
            (None: the default context).
        task_timeout: Seconds each item may run (each task of ``apply``,
            each item of ``map``, also inside a chunk), unless a call gives
            its own ``task_timeout``.  An item still running then has its
            worker killed (and replaced) and fails with
            :class:`TaskTimeoutError`; the other items go on.  None: no limit.
        max_memory_per_child: A worker whose resident memory is above this
            after a task is replaced before it takes another (bytes, or a
            string such as ``"512MiB"`` or ``"2GB"``).
        memory_limit: A worker whose resident memory goes above this is
            killed at once (checked every 0.1 s while it runs a task; on
            Linux the worker also checks its peak after each item that ran
            1 ms or more, so a short spike counts too) and its
            item fails with :class:`MemoryLimitError` (same forms).

    A worker that dies fails the task it was running with
    :class:`TerminatedWorkerError` and is replaced; inside a chunk, only the
    item it was running fails, and the chunk's other items run again (those
    before it may thus run twice).  Use the pool as a context
    manager, or ``close()`` and ``join()`` it; leaving the ``with`` block
    calls ``terminate()``.
    """

    _wrap_exception = True

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        """Make a worker process (override to customize, as with the standard library)."""
        return ctx.Process(*args, **kwds)

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        task_timeout: float | None = None,
        max_memory_per_child: int | str | None = None,
        memory_limit: int | str | None = None,
    ) -> None:
        # Set first: __del__ looks at them even if __init__ fails.
        self._pool: list[Any] = []
        self._state = INIT
        self._task_timeout = self._check_pool_timeout(task_timeout)
        self._memory_limit = _parse_size(memory_limit, "memory_limit")
        self._max_memory_per_child = _parse_size(max_memory_per_child, "max_memory_per_child")

        self._ctx = context or _context._default_context.get_context()
        self._maxtasksperchild = maxtasksperchild
        self._initializer = initializer
        self._initargs = initargs

        if processes is None:
            processes = os.cpu_count() or 1
        else:
            # Checked here, as the standard library does: a float would fail only
            # later, inside map().
            processes = _as_int(processes, "processes", "or None (os.cpu_count())")
        if processes < 1:
            raise ValueError(f"Number of processes must be at least 1, not {processes}")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError(
                f"maxtasksperchild must be a positive int or None, not {maxtasksperchild!r}"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes

        self._cache = _PoolCache()
        self._coordinator = self._make_coordinator()
        self._cache.notifier = self._coordinator.wake
        self._pool = self._coordinator.pool
        try:
            self._repopulate_pool()
        except Exception:
            for p in self._pool:
                if p.exitcode is None:
                    p.terminate()
            for p in self._pool:
                p.join()
            self._coordinator.terminate()
            raise
        self._coordinator.start()
        self._terminate = _PoolFinalizer(self, self._coordinator.terminate, exitpriority=15)
        self._state = RUN

    def _make_coordinator(self) -> Any:
        return _Coordinator(
            self._ctx,
            self.Process,
            self._processes,
            self._initializer,
            self._initargs,
            self._maxtasksperchild,
            self._wrap_exception,
            self._cache,
            task_timeout=self._task_timeout,
            memory_limit=self._memory_limit,
            max_memory_per_child=self._max_memory_per_child,
        )

    @staticmethod
    def _check_pool_timeout(task_timeout: Any) -> float | None:
        seconds = _check_timeout(task_timeout)
        return None if seconds is None or seconds == float("inf") else seconds

    def _timeout(self, task_timeout: Any) -> float | None:
        """The timeout of a call's items: its own, else the pool's (checked here, at the call)."""
        return _resolve_timeout(task_timeout, self._task_timeout)

    # Globals bound as defaults: __del__ may run while the interpreter shuts down.
    def __del__(self, _warn: Callable[..., None] = warnings.warn, RUN: str = RUN) -> None:
        if getattr(self, "_state", None) == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def __repr__(self) -> str:
        cls = self.__class__
        return (
            f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={len(self._pool)}>"
        )

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _repopulate_pool(self) -> None:
        """Bring the number of workers up to ``processes`` (normally done by the pool itself)."""
        if self._state == INIT:
            self._coordinator.start_workers()
        else:
            self._coordinator.wake()

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")
        broken = self._coordinator.broken
        if broken is not None:
            raise self._coordinator._broken_error()

    def _submit(
        self,
        result: Any,
        func: Callable[..., Any],
        kind: int,
        payloads: Iterable[Any],
        api: str,
        chunksize: int = 1,
        timeout: float | None = None,
    ) -> None:
        serializer = self._call_serializer()
        result._call = f"{api}({_callable_name(func)})"
        self._coordinator.submit(
            _Job(result, func, kind, payloads, api, chunksize, serializer, timeout)
        )

    def _call_serializer(self) -> reduction.Serializer | None:
        # Looked up at each call, so that set_serializer() applies at once.
        return _serializer_of(self._ctx)

    # -- the API ------------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},  # the standard library's default (never mutated)
        *,
        task_timeout: float | None = None,
    ) -> _T:
        """Call ``func(*args, **kwds)`` in a worker and return the result.

        ``task_timeout`` (seconds) overrides the pool's for this call
        (``math.inf``: none); past it, the call fails with ``TaskTimeoutError``.
        """
        return self.apply_async(func, args, kwds, task_timeout=task_timeout).get()

    def apply_async(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},  # the standard library's default (never mutated)
        callback: Callable[[_T], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> ApplyResult[_T]:
        """Start ``func(*args, **kwds)`` in a worker; return an ``AsyncResult``.

        ``callback(result)`` or ``error_callback(exception)`` is called in a
        pool thread when the call completes; keep them short.  In a coroutine,
        ``await`` the result (see ``ApplyResult.__await__``).  ``task_timeout``
        (seconds) overrides the pool's for this call (``math.inf``: none).
        """
        self._check_running()
        timeout = self._timeout(task_timeout)
        payload = (tuple(args), dict(kwds))
        result: ApplyResult[_T] = ApplyResult(self, callback, error_callback)
        self._submit(result, func, _APPLY, [payload], "apply_async", 1, timeout)
        return result

    def map(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int | None = None,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> list[_T]:
        """Return ``[func(x) for x in iterable]``, computed by the workers in chunks.

        An exception that ``func`` raises for an item is raised here, with the
        worker's traceback as ``__cause__`` and a note naming the item, such as
        ``in square(item 17 of map: 'abc')``.
        ``progress``: ``True`` (a tqdm bar), a tqdm-like object, or a callable
        ``progress(done, total)``, updated as items are done, from the pool's
        thread that handles results: see :mod:`multiprocess.pool._progress`.
        ``task_timeout`` (seconds) limits each item, also inside a chunk, and
        overrides the pool's (``math.inf``: none).

        Raises:
            TypeError: ``progress`` is not one of the values above.
            ImportError: ``progress=True`` and tqdm is not installed
                (``pip install multiprocess[progress]``).
        """
        return self._map_async(
            func, iterable, _MAP, chunksize, api="map", progress=progress, task_timeout=task_timeout
        ).get()

    def map_async(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int | None = None,
        callback: Callable[[list[_T]], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> MapResult[_T]:
        """Like ``map()``, returning a ``MapResult`` at once (awaitable in a coroutine)."""
        return self._map_async(
            func,
            iterable,
            _MAP,
            chunksize,
            callback,
            error_callback,
            "map_async",
            progress,
            task_timeout,
        )

    def starmap(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> list[_T]:
        """Return ``[func(*args) for args in iterable]``, computed by the workers.

        Errors, ``progress`` and ``task_timeout`` as for ``map()`` (the note
        shows the argument tuple).
        """
        return self._map_async(
            func,
            iterable,
            _STARMAP,
            chunksize,
            api="starmap",
            progress=progress,
            task_timeout=task_timeout,
        ).get()

    def starmap_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[_T]], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> MapResult[_T]:
        """Like ``starmap()``, returning a ``MapResult`` at once (awaitable in a coroutine)."""
        return self._map_async(
            func,
            iterable,
            _STARMAP,
            chunksize,
            callback,
            error_callback,
            "starmap_async",
            progress,
            task_timeout,
        )

    def _map_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Any],
        kind: int,
        chunksize: int | None = None,
        callback: Any = None,
        error_callback: Any = None,
        api: str = "map",
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> MapResult[_T]:
        self._check_running()
        timeout = self._timeout(task_timeout)
        if chunksize is not None:
            if _as_int(chunksize, "chunksize") == 0:
                # The stdlib's map returns a list of Nones for 0, without an
                # error, and code passes it (pathos' own tests do): choose for
                # the caller, as for None, and return the real results.
                chunksize = None
            else:
                chunksize = _check_chunksize(chunksize, repr)
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        length = len(iterable)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize, extra = divmod(length, self._processes * 4)
            if extra:
                chunksize += 1
        if length == 0:
            chunksize = 0
        tracker = _progress.start(
            progress,
            total=length,
            kind=kind,
            chunksize=chunksize,
            desc=f"{api}({_callable_name(func)})",
        )
        result: MapResult[_T] = MapResult(
            self, chunksize, length, callback, error_callback=error_callback
        )
        if tracker is not None:
            if chunksize > 0:
                result._progress = tracker
            else:
                tracker.close()  # nothing to do: the call has ended already
        if chunksize > 0:
            self._submit(result, func, kind, _chunks(iterable, chunksize), api, chunksize, timeout)
        return result

    # chunksize 1 (the default) gives the IMapIterator itself, with next(timeout);
    # a larger one an iterator over its chunks' items (for and async for only).
    if TYPE_CHECKING:  # for type checkers: typing is not imported at run time

        @overload
        def imap(
            self,
            func: Callable[[_S], _T],
            iterable: Iterable[_S],
            chunksize: Literal[1] = 1,
            *,
            progress: _progress.ProgressArg = None,
            task_timeout: float | None = None,
        ) -> IMapIterator[_T]: ...
        @overload
        def imap(
            self,
            func: Callable[[_S], _T],
            iterable: Iterable[_S],
            chunksize: int,
            *,
            progress: _progress.ProgressArg = None,
            task_timeout: float | None = None,
        ) -> ResultIterator[_T]: ...

    def imap(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int = 1,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> ResultIterator[_T]:
        """Like ``map()``, but yield the results in order as they come; inputs are read lazily.

        Iterate with ``for``, or with ``async for`` in a coroutine (see
        ``IMapIterator.__anext__``).  Errors, ``progress`` and ``task_timeout``
        as for ``map()``; the total is ``len(iterable)`` if it has one, else
        None.  An item that fails alone inside a chunk (timed out, or its
        worker died) raises its error at its place, and iterating further goes on.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, "imap", progress, task_timeout)

    # chunksize 1 (the default) gives the IMapIterator itself, with next(timeout);
    # a larger one an iterator over its chunks' items (for and async for only).
    if TYPE_CHECKING:  # for type checkers: typing is not imported at run time

        @overload
        def imap_unordered(
            self,
            func: Callable[[_S], _T],
            iterable: Iterable[_S],
            chunksize: Literal[1] = 1,
            *,
            progress: _progress.ProgressArg = None,
            task_timeout: float | None = None,
        ) -> IMapUnorderedIterator[_T]: ...
        @overload
        def imap_unordered(
            self,
            func: Callable[[_S], _T],
            iterable: Iterable[_S],
            chunksize: int,
            *,
            progress: _progress.ProgressArg = None,
            task_timeout: float | None = None,
        ) -> ResultIterator[_T]: ...

    def imap_unordered(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int = 1,
        *,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> ResultIterator[_T]:
        """Like ``imap()``, but yield results in the order they complete (``for`` or ``async for``)."""
        return self._imap(
            IMapUnorderedIterator,
            func,
            iterable,
            chunksize,
            "imap_unordered",
            progress,
            task_timeout,
        )

    def _imap(
        self,
        iterator_class: type[IMapIterator[Any]],
        func: Callable[[Any], _T],
        iterable: Iterable[Any],
        chunksize: int,
        api: str,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> ResultIterator[_T]:
        self._check_running()
        # The stdlib words the two methods' messages slightly differently.
        chunksize = _check_chunksize(chunksize, "{:n}".format if api == "imap" else repr)
        timeout = self._timeout(task_timeout)
        kind = _ONE if chunksize == 1 else _MAP
        tracker = None
        if progress is not None and progress is not False:
            tracker = _progress.start(
                progress,
                total=_progress.total_of(iterable),
                kind=kind,
                chunksize=chunksize,
                desc=f"{api}({_callable_name(func)})",
            )
        result = iterator_class(self)
        if tracker is not None:
            result._progress = tracker
        if chunksize == 1:
            self._submit(result, func, _ONE, iterable, api, 1, timeout)
            return result
        chunks = _chunks(iterable, chunksize)
        if tracker is not None and tracker.total is None:
            chunks = tracker.counting(chunks)  # to know the size of the last chunk
        self._submit(result, func, _MAP, chunks, api, chunksize, timeout)
        return _ChunkedIterator(result)

    def close(self) -> None:
        """Accept no more tasks; the workers exit once the pending ones are done."""
        util.debug("closing pool")
        if self._state == RUN:
            self._state = CLOSE
            self._coordinator.close()

    def terminate(self) -> None:
        """Stop at once: kill the workers; pending tasks fail with PoolTerminatedError."""
        util.debug("terminating pool")
        self._state = TERMINATE
        self._terminate()
        drop_spares()  # the memfds kept from results (see _oob.decode)

    def join(self) -> None:
        """Wait for the workers to exit; call ``close()`` or ``terminate()`` first."""
        util.debug("joining pool")
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._coordinator.join()
        drop_spares()  # the memfds kept from results (see _oob.decode)

    def __enter__(self) -> Self:
        self._check_running()
        return self

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        self.terminate()


class ThreadPool(Pool):
    """A pool with the ``Pool`` API whose workers are threads of this process.

    Nothing is pickled.  ``terminate()`` cannot interrupt a running function:
    it fails the pending tasks at once, and the threads stop after their
    current task (``join()`` waits for that).
    """

    _wrap_exception = False

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        from ..dummy import Process

        return Process(*args, **kwds)

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        task_timeout: float | None = None,
    ) -> None:
        """As ``Pool``; ``task_timeout`` must be None (see ``_timeout``)."""
        self._timeout(task_timeout)
        Pool.__init__(self, processes, initializer, initargs)

    def _timeout(self, task_timeout: Any) -> float | None:
        # A thread cannot be stopped from outside (it may hold locks the whole
        # process needs): a timeout would be a promise the pool cannot keep.
        if task_timeout is not None:
            _check_timeout(task_timeout)
            raise ValueError(
                "task_timeout is not supported by ThreadPool: a running thread cannot be "
                "stopped. Use a process Pool (multiprocess.Pool) to time out tasks, or "
                "wait with a timeout (AsyncResult.get(timeout), IMapIterator.next(timeout)), "
                "which gives up waiting but lets the task run on."
            )
        return None

    def _call_serializer(self) -> reduction.Serializer | None:
        return None  # threads share objects: nothing is pickled

    def _make_coordinator(self) -> Any:
        return _ThreadCoordinator(
            self._processes, self._initializer, self._initargs, False, self._cache
        )


# Known by the package's name, as before the package was split (see the package docstring).
for _public in (
    Pool,
    ThreadPool,
):
    _public.__module__ = "multiprocess.pool"
del _public
