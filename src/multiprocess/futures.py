"""``ProcessPoolExecutor``: the ``concurrent.futures`` face of the pool's engine (layer 5).

The executor owns no workers of its own: it is a second face on the
coordinator that runs :class:`multiprocess.pool.Pool` (``pool._Coordinator``),
so it shares the Pool's dispatch, serialization (dill through
:mod:`multiprocess.reduction`: lambdas, closures, ``__main__`` functions) and
fault handling::

  submit(fn, ...) -> Future --> our queue --(a window of calls at once)--> one
  coordinator job per run of queued calls of one function, a task per call;
  its result adapter sets each task's Future (set_result / set_exception)

  map(fn, *its) --> one coordinator job whose tasks are the chunks; each chunk's
  result sets that chunk's Future; the iterator yields them in order

It returns real ``concurrent.futures.Future`` objects, so ``wait``,
``as_completed``, ``add_done_callback`` and ``asyncio.wrap_future`` work
unchanged.  Faults are per task, as in the Pool: a worker that dies fails only
the future it was running, with :class:`WorkerDiedError` (both the pool's
``TerminatedWorkerError`` and ``concurrent.futures.process.BrokenProcessPool``),
and a replacement worker runs what comes next.  An initializer that raises
breaks the executor, as the standard library's does.

Only a window of submitted calls is handed to the coordinator at a time (the
others wait in our queue, cancellable), so that ``Future.cancel()`` and
``shutdown(cancel_futures=True)`` keep their meaning: a call not yet handed
over never runs.  The window is 2 calls per worker while calls are long, and
grows (up to 16 per worker, at least 64) while they are short.  Workers start
as calls need them, except under fork, where all start with the executor.
At interpreter exit, calls still running are stopped (the workers killed), not
waited for: exit never hangs.

Task control is the engine's: ``task_timeout=`` (on the executor, on ``map``,
and per call through ``schedule``) kills the worker of a call that runs too
long and fails that call with :class:`multiprocess.TaskTimeoutError`;
``memory_limit=`` and ``max_memory_per_child=`` bound the workers' resident
memory.  Inside a ``map`` chunk these faults, and a worker's death, fail the
one item they hit: the iterator yields the items before it, then raises.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import logging
import os
import pickle
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, overload

    from typing_extensions import ParamSpec  # annotations only (in typing from 3.10)

    _P = ParamSpec("_P")
else:
    from ._generics import TypeVar, overload

from . import context as _context
from ._errors import ProcessError
from ._reusable import get_reusable_executor
from .pool import (
    BrokenPoolError,
    MaybeEncodingError,
    PoolTerminatedError,
    TerminatedWorkerError,
    _progress,
)
from .pool._coordinator import _Coordinator
from .pool._exceptions import _adopt_futures_bases, _callable_name
from .pool._jobs import _chunks, _Job
from .pool._limits import _check_timeout, _parse_size, _resolve_timeout
from .pool._pool import _PoolFinalizer, _serializer_of
from .pool._results import _ItemFailed, _job_counter, _PartialChunk, _PoolCache
from .pool._wire import _APPLY, _MAP, _STARMAP

_T = TypeVar("_T")
_S1 = TypeVar("_S1")
_S2 = TypeVar("_S2")

__all__ = ["ProcessPoolExecutor", "WorkerDiedError", "get_reusable_executor"]


class WorkerDiedError(TerminatedWorkerError, BrokenExecutor):
    """The worker process running this call died (killed, crashed, ``os._exit``).

    Only this call's future fails; the executor has started a replacement
    worker and goes on.  It is the pool's :class:`TerminatedWorkerError`
    (``pid`` and ``exitcode`` name the worker) and also a
    ``concurrent.futures.process.BrokenProcessPool``, so that ``except``
    clauses written for the standard library's executor catch it.
    """

    def __init__(self, message: str, pid: int | None = None, exitcode: int | None = None):
        _adopt_futures_bases(WorkerDiedError, (TerminatedWorkerError,))
        super().__init__(message, pid, exitcode)


_adopt_futures_bases(WorkerDiedError, (TerminatedWorkerError,))
_adopt_futures_bases(BrokenPoolError, (ProcessError,))  # concurrent.futures is loaded now


class ResultPicklingError(MaybeEncodingError, pickle.PicklingError):
    """A call's result (or exception) could not be pickled in the worker.

    The pool's ``MaybeEncodingError`` and a ``pickle.PicklingError``, which is
    what code written for the standard library's executor catches.
    """


def _run_initializer(initializer: Callable[..., Any], *initargs: Any) -> None:
    """Run the user's initializer in a worker; log its exception as the stdlib's executor does."""
    try:
        initializer(*initargs)
    except BaseException:
        logging.getLogger("concurrent.futures").critical("Exception in initializer:", exc_info=True)
        raise


# A call handed over and done within this many seconds lets more calls be handed over.
_SHORT_CALL = 0.01


def _default_max_workers() -> int:
    # As the standard library on this Python: process_cpu_count() from 3.13.
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return count or 1


def _for_executor(exc: BaseException) -> BaseException:
    """The pool's error as users of ``concurrent.futures`` expect to catch it."""
    error: BaseException
    if type(exc) is MaybeEncodingError:
        error = ResultPicklingError.__new__(ResultPicklingError)
        error.args, error.__dict__ = exc.args, dict(exc.__dict__)
        error.__cause__ = exc.__cause__
        return error
    if type(exc) is TerminatedWorkerError:
        error = WorkerDiedError(exc.args[0], exc.pid, exc.exitcode)
        error.__cause__ = exc.__cause__
        return error
    if isinstance(exc, PoolTerminatedError):
        error = BrokenPoolError(
            "the executor's workers were stopped (terminate_workers(), kill_workers() or "
            "interpreter exit) before this call finished"
        )
        error.__cause__ = exc
        return error
    return exc


class _FutureResult:
    """Sets Futures from a coordinator job: the result protocol the coordinator calls.

    ``futures[i]`` receives task ``i``'s outcome: the value of a ``submit``,
    or the list of results of chunk ``i`` of a ``map``.
    """

    _call = "submit()"
    # Never set: a cancelled Future is dropped before its payload is drawn
    # (see _run_chunk), so the engine always draws this job to its end.
    _cancelled = False
    # map(progress=...): a _progress._Progress, told of each chunk that ends.
    _progress: Any = None

    def __init__(
        self,
        executor: ProcessPoolExecutor,
        futures: Iterable[concurrent.futures.Future],
        done: Callable[[], None] | None = None,
        each: Callable[[int], None] | None = None,
    ) -> None:
        self._job = next(_job_counter)
        # Pending calls keep their executor alive (its finalizer would stop them).
        self._executor: ProcessPoolExecutor | None = executor
        self._cache = executor._cache
        self._futures: list[concurrent.futures.Future | None] = list(futures)
        self._left = len(self._futures)
        self._lock = threading.Lock()
        self._done = done
        # Told how many futures got their outcome, as they get it (submit's window).
        self._each = each
        self._cache[self._job] = self

    def _set(self, i: int, obj: tuple[bool, Any]) -> None:
        if self._progress is not None:
            self._progress.task_done(i, obj)
        ok, value = obj
        future = self._futures[i]
        # Forgotten: a result must live no longer than its Future's holder wants.
        self._futures[i] = None
        with self._lock:
            counted = self._left > 0  # not after _abandon
            self._left -= 1
            finished = self._left == 0
        # Before the caller wakes up: a call it submits at once must find
        # this one counted as done (one idle worker, not a second one).
        if counted and self._each is not None:
            self._each(1)
        if finished:
            self._finish()
        if future is not None:
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(_for_executor(value))
            except concurrent.futures.InvalidStateError:
                pass  # cancelled (a map's iterator was closed)

    def _tasks_ended(self, count: int) -> None:
        # The inputs ran out early (they raised: that task's future has the error).
        with self._lock:
            missing = len(self._futures) - count
            if missing <= 0 or self._left <= 0:
                return
            self._left -= missing
            finished = self._left <= 0
        if self._each is not None:
            self._each(missing)
        if finished:
            self._finish()

    def _abandon(self, exc: BaseException) -> None:
        with self._lock:
            if self._left <= 0:
                return
            left, self._left = self._left, 0
        if self._each is not None:
            self._each(left)
        for future in self._futures:
            if (
                future is not None
                and not future.done()
                and (future.running() or future.set_running_or_notify_cancel())
            ):
                future.set_exception(_for_executor(exc))
        self._finish()

    def _finish(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._cache.forget(self._job)
        if self._done is not None:
            self._done()
        self._executor = None

    def _pending(self) -> str:
        return ""

    def _set_chunk(self, i: int, chunk: _PartialChunk) -> None:
        """Chunk ``i`` of a map came back with items that failed alone: see ``_results``."""
        for value in chunk:
            if type(value) is _ItemFailed:
                value.error = _for_executor(value.error)
        self._set(i, (True, chunk))


def _run_chunk(future: concurrent.futures.Future, chunk: Sequence[Any]) -> Sequence[Any]:
    """The payload of a map chunk, or none if its future was cancelled meanwhile."""
    if future.set_running_or_notify_cancel():
        return chunk
    return ()


class ProcessPoolExecutor(concurrent.futures.Executor):
    """An executor that runs calls in worker processes, on the Pool's engine.

    The standard library's API (as of Python 3.14) on every supported Python.

    Args:
        max_workers: Number of worker processes; None means as many as the
            standard library would use on this Python (``os.process_cpu_count()``
            from 3.13, ``os.cpu_count()`` before).
        mp_context: A ``multiprocess`` context (start method and serializer);
            None means the default context, or spawn when ``max_tasks_per_child``
            is given (as the standard library does).
        initializer: Called as ``initializer(*initargs)`` in each worker when
            it starts.  If it raises, the executor is broken: pending and later
            calls fail with ``BrokenProcessPool``.
        initargs: Arguments of ``initializer``.
        max_tasks_per_child: Each worker is replaced after this many tasks
            (None: never).  Not with the fork start method, as in the standard
            library.
        task_timeout: Seconds each call (each item of a ``map``, also inside
            a chunk) may run, unless ``map`` or ``schedule`` gives its own.
            A call still running then has its worker killed (and replaced)
            and fails with :class:`multiprocess.TaskTimeoutError`; the others
            go on.  None: no limit.
        max_memory_per_child: A worker whose resident memory is above this
            after a call is replaced before it takes another (bytes, or a
            string such as ``"512MiB"`` or ``"2GB"``).
        memory_limit: A worker whose resident memory goes above this is
            killed at once (checked every 0.1 s while it runs a call; on
            Linux the worker also checks its peak after each item that ran
            1 ms or more, so a short spike counts too) and its
            call fails with :class:`multiprocess.MemoryLimitError` (same forms).

    Raises:
        ValueError: ``max_workers`` or ``max_tasks_per_child`` is below 1, or
            ``max_tasks_per_child`` is given with a fork context.
        TypeError: ``initializer`` is not callable, or ``max_tasks_per_child``
            is not an int.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        max_memory_per_child: int | str | None = None,
        memory_limit: int | str | None = None,
    ) -> None:
        self._shutdown_called = False
        seconds = _check_timeout(task_timeout)
        self._task_timeout = None if seconds is None or seconds == float("inf") else seconds
        memory_limit = _parse_size(memory_limit, "memory_limit")
        max_memory_per_child = _parse_size(max_memory_per_child, "max_memory_per_child")
        if max_workers is None:
            max_workers = _default_max_workers()
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            default = _context._default_context
            mp_context = default.get_context("spawn" if max_tasks_per_child else None)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                raise ValueError(
                    "max_tasks_per_child is incompatible with the 'fork' multiprocessing "
                    "start method; supply a different mp_context."
                )
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._max_tasks_per_child = max_tasks_per_child

        self._lock = threading.Lock()
        self._queue: collections.deque[
            tuple[concurrent.futures.Future, Any, Any, Any, float | None]
        ] = collections.deque()
        # Calls handed to the coordinator at once: few while calls are long (the
        # others stay cancellable), more while they are short (throughput).
        self._min_window = 2 * max_workers
        self._max_window = max(64, 16 * max_workers)
        self._window = self._min_window
        self._in_flight = 0
        self._pumping = False
        self._pump_again = False
        self._closed = threading.Event()  # set once the coordinator is told to close

        self._cache = _PoolCache()
        if initializer is not None:
            initializer, initargs = _run_initializer, (initializer, *initargs)
        coordinator = self._make_coordinator(
            initializer, initargs, memory_limit, max_memory_per_child
        )
        self._cache.notifier = coordinator.wake
        self._on_demand = self._starts_on_demand()
        if self._on_demand:
            coordinator._processes = 0
        try:
            coordinator.start_workers()
        except BaseException:
            coordinator.terminate()
            raise
        coordinator.start()
        self._coordinator = coordinator
        self._finalizer = _PoolFinalizer(self, coordinator.terminate, exitpriority=15)

    def _make_coordinator(
        self,
        initializer: Callable[..., Any] | None,
        initargs: Iterable[Any],
        memory_limit: int | None,
        max_memory_per_child: int | None,
    ) -> Any:
        """The engine (another engine's executor overrides this, see ``multiprocess.dask``)."""
        return _Coordinator(
            self._mp_context,
            lambda ctx, *args, **kwds: ctx.Process(*args, **kwds),
            self._max_workers,
            initializer,
            initargs,
            self._max_tasks_per_child,
            True,
            self._cache,
            task_timeout=self._task_timeout,
            memory_limit=memory_limit,
            max_memory_per_child=max_memory_per_child,
        )

    def _starts_on_demand(self) -> bool:
        # Workers start as calls need them (the stdlib's behaviour), except
        # under fork, where starting them later would fork a parent that has
        # threads running: the stdlib starts them all at once there too.
        return self._mp_context.get_start_method(allow_none=False) != "fork"  # type: ignore[no-any-return]

    # -- what the standard library's executor exposes (its tests read them) ----

    @property
    def _processes(self) -> dict[int, Any]:
        """The live worker processes by pid (a snapshot)."""
        return {p.pid: p for p in self._coordinator.pool}

    @property
    def _broken(self) -> BrokenPoolError | bool:
        return self._coordinator.broken or False

    # -- submit -------------------------------------------------------------------

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> concurrent.futures.Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return its ``Future``.

        Raises:
            RuntimeError: the executor was shut down.
            BrokenProcessPool: the executor is broken (its initializer raised,
                or workers kept dying as they started).
        """
        return self._schedule(fn, args, kwargs, self._task_timeout)

    def schedule(
        self,
        fn: Callable[..., _T],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> concurrent.futures.Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` as ``submit`` does, with a ``task_timeout``.

        ``task_timeout`` (seconds) overrides the executor's for this call
        (``math.inf``: none).  A call still running after it has its worker
        killed and replaced, and its future fails with
        :class:`multiprocess.TaskTimeoutError`.  (``submit`` passes its own
        keyword arguments to ``fn``, hence this method.)

        Raises:
            RuntimeError: the executor was shut down.
            BrokenProcessPool: the executor is broken.
            TypeError, ValueError: ``task_timeout`` is not a positive number.
        """
        timeout = _resolve_timeout(task_timeout, self._task_timeout)
        return self._schedule(fn, tuple(args), dict(kwargs or {}), timeout)

    def _schedule(
        self, fn: Callable[..., _T], args: Any, kwargs: Any, timeout: float | None
    ) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            self._check_open()
            self._queue.append((future, fn, args, kwargs, timeout))
            # A full window: the calls that finish will pump (see _call_done).
            if self._in_flight >= self._window:
                return future
            if self._pumping:
                self._pump_again = True
                return future
        self._pump()
        return future

    def _check_open(self) -> None:
        if self._coordinator.broken is not None:
            raise self._coordinator._broken_error()
        if self._shutdown_called:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _pump(self) -> None:
        """Hand queued calls to the coordinator while the window has room.

        Runs on the caller's thread (submit) and on the coordinator's (calls
        finished); one pump at a time, the others only ask it to go round again.
        All the calls the window takes at once go in one round (see ``_hand_over``).
        """
        with self._lock:
            if self._pumping:
                self._pump_again = True
                return
            self._pumping = True
        close = False
        try:
            while True:
                with self._lock:
                    calls = []
                    while self._queue and self._in_flight < self._window:
                        candidate = self._queue.popleft()
                        if candidate[0].set_running_or_notify_cancel():
                            calls.append(candidate)
                            self._in_flight += 1
                    busy = self._in_flight
                    if not calls:
                        if self._shutdown_called and not self._queue and not self._closed.is_set():
                            close = True
                            self._closed.set()
                        if not self._pump_again:
                            self._pumping = False
                            break
                        self._pump_again = False
                if calls:
                    self._hand_over(calls)
                    self._need_workers(busy)
            if close:
                self._coordinator.close()
        except BaseException:
            with self._lock:
                self._pumping = False
            raise

    def _hand_over(
        self, calls: list[tuple[concurrent.futures.Future, Any, Any, Any, float | None]]
    ) -> None:
        """Give ``calls`` to the coordinator: each run of calls of one function is one job.

        A job of several ``apply`` tasks is one of the engine's own kinds of
        call: each task is sent, run, timed, and failed (a worker that dies
        on it) alone, and sets its own future; the job saves the
        per-call costs of the engine (its bookkeeping, a wake-up of its
        feeder, the check that the function's pickle is still good).
        """
        handed = time.monotonic()
        serializer = _serializer_of(self._mp_context)
        done = functools.partial(self._call_done, handed)
        start = 0
        while start < len(calls):
            _future, fn, _args, _kwargs, timeout = calls[start]
            end = start + 1
            while end < len(calls) and calls[end][1] is fn and calls[end][4] == timeout:
                end += 1
            run = calls[start:end]
            start = end
            result = _FutureResult(self, [call[0] for call in run], each=done)
            result._call = f"submit({_callable_name(fn)})"
            job = _Job(
                result,
                fn,
                _APPLY,
                [(call[2], call[3]) for call in run],
                "submit",
                1,
                serializer,
                timeout,
                catch_all=True,
            )
            self._coordinator.submit(job)

    def _need_workers(self, busy: int) -> None:
        """Have the coordinator start workers (up to max_workers) for ``busy`` calls at once."""
        coordinator = self._coordinator
        if self._on_demand and coordinator._processes < min(busy, self._max_workers):
            # The coordinator starts workers up to this number (see _maintain).
            coordinator._processes = min(busy, self._max_workers)
            coordinator.wake()

    def _grow(self, max_workers: int) -> None:
        """Run up to ``max_workers`` calls at once from now on (more than today's)."""
        with self._lock:
            self._max_workers = max_workers
            self._min_window = 2 * max_workers
            self._max_window = max(64, 16 * max_workers)
            self._window = max(self._window, self._min_window)
            busy = self._in_flight
        if self._on_demand:
            self._need_workers(busy)
        else:
            self._coordinator._processes = max_workers
            self._coordinator.wake()
        self._pump()

    def _call_done(self, handed: float, count: int) -> None:
        """``count`` calls handed over at ``handed`` are done: hand over more."""
        short = time.monotonic() - handed < _SHORT_CALL
        with self._lock:
            self._in_flight -= count
            if short:
                self._window = min(self._window * 2, self._max_window)
            else:
                self._window = self._min_window
        # On the coordinator's thread, once it has handled the results it
        # read together: their calls' successors go over in one round.
        self._coordinator.call_soon(self._pump)

    # -- map --------------------------------------------------------------------

    # One or two iterables: the function's parameters are checked against
    # their items (typeshed's Executor.map checks none); none, or three and
    # more: as Executor.map.  Together they take every call Executor.map
    # takes, which mypy does not see (it wants one overload that takes them
    # all, and that one would let map(square, ["x"]) through): hence the ignore.
    @overload  # type: ignore[override]
    def map(
        self,
        fn: Callable[[_S1], _T],
        iterable: Iterable[_S1],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> Iterator[_T]: ...
    @overload
    def map(
        self,
        fn: Callable[[_S1, _S2], _T],
        iterable1: Iterable[_S1],
        iterable2: Iterable[_S2],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> Iterator[_T]: ...
    @overload
    def map(
        self,
        fn: Callable[..., _T],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> Iterator[_T]: ...
    @overload
    def map(
        self,
        fn: Callable[..., _T],
        iterable1: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> Iterator[_T]: ...
    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: _progress.ProgressArg = None,
        task_timeout: float | None = None,
    ) -> Iterator[_T]:
        """Return an iterator of ``fn(*args)`` for ``args`` in ``zip(*iterables)``.

        The inputs are read at once (or ``buffersize`` chunks ahead, if given)
        and sent to the workers ``chunksize`` items per task; results come
        in order.  A call that raised raises from ``next()`` at its place,
        with a note naming the item (``in square(item 17 of map: 'abc')``).

        ``progress``: ``True`` (a tqdm bar, ``pip install multiprocess[progress]``),
        a tqdm-like object (with ``update(n)``), or a callable
        ``progress(done, total)``: updated as items are done, from the
        executor's thread that handles results (see
        :mod:`multiprocess.pool._progress`).

        ``task_timeout`` (seconds) limits each call, also inside a chunk,
        and overrides the executor's (``math.inf``: none); with
        ``buffersize``, it limits each chunk as a whole.

        Raises:
            ValueError: ``chunksize`` or ``buffersize`` is below 1.
            TypeError: ``progress`` is none of the values above.
            ImportError: ``progress=True`` and tqdm is not installed.
            TimeoutError: (from ``next()``) a result is not ready ``timeout``
                seconds after the call to ``map``.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        item_timeout = _resolve_timeout(task_timeout, self._task_timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        desc = f"map({_callable_name(fn)})"
        if buffersize is not None:
            total = None
            if progress is not None and progress is not False:
                totals = [_progress.total_of(it) for it in iterables]
                if totals and None not in totals:
                    total = min(totals)  # type: ignore[type-var]
            with self._lock:
                self._check_open()
            tracker = _progress.start(
                progress, total=total, kind=_STARMAP, chunksize=chunksize, desc=desc
            )
            kind = _MAP if len(iterables) == 1 else _STARMAP
            items = iterables[0] if kind == _MAP else zip(*iterables)
            chunks = _chunks(items, chunksize)
            return self._map_buffered(fn, kind, chunks, buffersize, deadline, item_timeout, tracker)
        # One iterable: chunks of items for func(x) (no argument tuples to build,
        # pickle and unpack); several: chunks of argument tuples for func(*args).
        kind = _MAP if len(iterables) == 1 else _STARMAP
        items = list(iterables[0] if kind == _MAP else zip(*iterables))
        starts = range(0, len(items), chunksize)
        with self._lock:
            self._check_open()
        tracker = _progress.start(
            progress,
            total=len(items) if progress is not None else None,
            kind=kind,
            chunksize=chunksize,
            desc=desc,
        )
        futures: list[concurrent.futures.Future] = [concurrent.futures.Future() for _ in starts]
        self._need_workers(self._in_flight + len(futures))
        if not futures and tracker is not None:
            tracker.close()  # nothing to do
        if futures:
            result = _FutureResult(self, futures)
            result._call = desc
            result._progress = tracker
            # The chunks are cut as the engine takes them (on its feeder thread).
            payloads = (_run_chunk(f, items[i : i + chunksize]) for f, i in zip(futures, starts))
            job = _Job(
                result,
                fn,
                kind,
                payloads,
                "map",
                chunksize,
                _serializer_of(self._mp_context),
                item_timeout,
                catch_all=True,
            )
            self._coordinator.submit(job)
        return _results(collections.deque(futures), deadline)

    def _map_buffered(
        self,
        fn: Callable[..., Any],
        kind: int,
        chunks: Iterator[tuple],
        buffersize: int,
        deadline: float | None,
        timeout: float | None,
        tracker: _progress._Progress | None = None,
    ) -> Iterator[Any]:
        first = 0
        call = f"map({_callable_name(fn)})"

        def submit(chunk: tuple) -> concurrent.futures.Future:
            # Each chunk is a map job of its own (its items timed, isolated and
            # named in errors as any map's), started only as the buffer allows.
            nonlocal first
            future: concurrent.futures.Future = concurrent.futures.Future()
            with self._lock:
                self._check_open()
            result = _FutureResult(self, [future])
            result._call = call
            self._need_workers(self._in_flight + 1)
            job = _Job(
                result,
                fn,
                kind,
                [_run_chunk(future, chunk)],
                "map",
                len(chunk),
                _serializer_of(self._mp_context),
                timeout,
                catch_all=True,
                first=first,
            )
            first += len(chunk)
            self._coordinator.submit(job)
            if tracker is not None:
                size = len(chunk)
                future.add_done_callback(lambda _future: tracker.add(size))
            return future

        pending: collections.deque[concurrent.futures.Future] = collections.deque(
            submit(chunk) for chunk in itertools.islice(chunks, buffersize)
        )

        def more() -> None:
            for chunk in itertools.islice(chunks, 1):
                pending.append(submit(chunk))

        return _results(pending, deadline, more, tracker)

    # -- shutting down --------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more calls; run (or with ``cancel_futures``, cancel) the queued ones.

        With ``wait`` (the default), return once every call has finished and
        the workers have exited.  Calling it again does nothing more.
        """
        with self._lock:
            self._shutdown_called = True
            cancelled = []
            if cancel_futures:
                cancelled = list(self._queue)
                self._queue.clear()
        for future, *_ in cancelled:
            future.cancel()
            future.set_running_or_notify_cancel()
        coordinator = self._coordinator
        self._pump()  # closes the coordinator once the queue is empty
        if wait:
            # The queue drains as calls finish (or fail, if the executor broke);
            # the pump that empties it closes the coordinator.
            self._closed.wait()
            coordinator.join()
            self._finalizer()
            # The coordinator and its stopped threads go with the last reference
            # (no cycle through the cache's notifier left for the collector).
            self._cache.notifier = None

    def terminate_workers(self) -> None:
        """Stop every worker with SIGTERM (SIGKILL if still there after a grace period).

        The executor shuts down: queued calls are cancelled, calls that were
        running fail with ``BrokenProcessPool``; it cannot be used afterwards.
        """
        self._stop_workers(kill=False)

    def kill_workers(self) -> None:
        """Like :meth:`terminate_workers`, with SIGKILL at once."""
        self._stop_workers(kill=True)

    def _stop_workers(self, kill: bool) -> None:
        self.shutdown(wait=False, cancel_futures=True)
        coordinator = self._coordinator
        if kill:
            # SIGKILL first; the engine's terminate() then stops the rest (a
            # replacement started meanwhile gets its SIGTERM) and fails what ran.
            for process in list(coordinator.pool):
                if process.exitcode is None:
                    process.kill()
        self._finalizer()


class _MapIterator(itertools.chain):
    """What ``map`` returns: the items of each chunk's list, in order.

    An ``itertools.chain`` over ``_chunk_items``, so that going from one item
    to the next runs in C (a generator's resume per item costs as much as
    the rest of a tiny task's trip).  Each chunk's list is emptied as it is
    read, as the standard library's iterator does: no result the caller has
    had stays referenced from here.  ``close()`` does what a generator's
    does: the calls not yet done are cancelled, and ``next()`` then raises
    StopIteration.
    """

    __slots__ = ("_source",)
    _source: Generator[Any, None, None]

    def close(self) -> None:
        """Cancel the calls not yet done; drop the results not yet read."""
        self._source.close()
        collections.deque(self, maxlen=0)  # the chunk being read, if any


def _results(
    pending: collections.deque[concurrent.futures.Future],
    deadline: float | None,
    more: Callable[[], None] | None = None,
    tracker: _progress._Progress | None = None,
) -> Iterator[Any]:
    """An iterator over the items of each chunk future's list, in order (see _MapIterator)."""
    source = _chunk_items(pending, deadline, more, tracker)
    # from_iterable makes an instance of the class it is called on (typeshed says chain).
    iterator: _MapIterator = _MapIterator.from_iterable(source)  # type: ignore[assignment]
    iterator._source = source
    return iterator


def _chunk_items(
    pending: collections.deque[concurrent.futures.Future],
    deadline: float | None,
    more: Callable[[], None] | None,
    tracker: _progress._Progress | None,
) -> Generator[Iterator[Any], None, None]:
    """For each chunk future in order, an iterator that pops its list's items;
    an item that failed alone raises here, after the items before it.

    Cancels the futures not reached when it ends (an error, a timeout, or
    ``close()``).
    """
    try:
        while pending:
            if more is not None:
                more()
            future = pending.popleft()
            if deadline is None:
                chunk = future.result()
            else:
                chunk = future.result(deadline - time.monotonic())
            # Hold no result the caller has had: not through the future, nor the list.
            del future
            error = None
            if type(chunk) is _PartialChunk:
                # An item that failed alone (a worker that died or timed out
                # on it): as any call's error, it ends the iteration, after
                # the items before it.
                for k, value in enumerate(chunk):
                    if type(value) is _ItemFailed:
                        error = value.error
                        del chunk[k:]
                        break
                value = None
            chunk.reverse()
            # chunk.pop() until it is empty, all in C.
            yield itertools.starmap(chunk.pop, itertools.repeat((), len(chunk)))
            if error is not None:
                raise error
    finally:
        for future in pending:
            future.cancel()
        if tracker is not None:
            tracker.close()
