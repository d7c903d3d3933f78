"""The engine of a pool on a Dask cluster: ``_DaskCoordinator`` (layer 5).

The same engine interface as the process and thread engines (``pool``,
``broken``, ``start_workers``, ``start``, ``wake``, ``submit``, ``close``,
``terminate``, ``join``), so that ``Pool`` and ``ProcessPoolExecutor`` are
the same faces on it.  Dask schedules; we only turn each task of a call into
one Dask task and its outcome back into the call's result::

  submit(job) --> feeder thread: draws the call's tasks (chunks, as the Pool
     chunks them), pickles each with our serializer, and hands it to Dask as
     client.submit(run_chunk, ..., task_bytes), at most a few per worker
     thread at a time (an imap over a huge iterator is read as Dask goes)
  Dask future done --> its callback queues it --> collector thread: gathers
     the results' bytes (a batch at a time), loads them with our serializer,
     and sets them on the call's result, as a pool's coordinator does

A call's function is pickled once (``_PickledFunctions``); if its pickle is
large (a partial over an array), it is scattered once and Dask moves it to
each worker that needs it once; small ones ride along with each task.  Either
way a worker loads it once (see ``_worker_side``).

Faults: a worker that dies running a task fails it with
``TerminatedWorkerError`` naming the worker's address (or runs it again, up to
``retries`` times); in a chunk, only the item that killed it fails (the
chunk's items run again one at a time: ``_isolate``); a task past its
``task_timeout`` fails with ``TaskTimeoutError`` and its Dask future is
cancelled, but Dask cannot stop a running thread: the function runs on in its
worker until it returns.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import functools
import itertools
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Callable

from .. import reduction, util
from .._errors import TaskTimeoutError
from ..pool._engine import _EngineBase
from ..pool._exceptions import (
    BrokenPoolError,
    ResultUnpicklingError,
    TerminatedWorkerError,
    _callable_name,
    _pickling_failure,
)
from ..pool._functions import _PickledFunction, _PickledFunctions
from ..pool._jobs import _explain_task_pickling_error, _isolate, _Job, _Redo
from ..pool._notes import name_item
from ..pool._results import _PoolCache
from ..pool._wire import _APPLY, _MAP, _STARMAP
from ._cluster import _Cluster
from ._worker_side import forget_pool, run_chunk

# A function whose pickle is at least this large is scattered (sent to each
# worker once, by Dask); a smaller one rides along with each task.
_SCATTER_AT = 64 << 10
# Tasks handed to Dask at once, per worker thread (calls with a timeout: 1,
# so that a task starts about when it is handed over, when its clock starts).
_IN_FLIGHT_PER_THREAD = 3
_STOP = object()
_task_numbers = itertools.count()


class _DaskTask:
    """One task of a call (an apply, an item, or a chunk), handed to Dask."""

    __slots__ = (
        "body",
        "deadline",
        "fdata",
        "fkey",
        "future",
        "index",
        "job",
        "redo",
        "size",
        "tries",
    )

    def __init__(self, job: _Job, index: int, body: bytes, fkey: str, fdata: Any) -> None:
        self.job = job
        self.index = index
        self.body = body
        self.fkey = fkey
        self.fdata = fdata  # the function's bytes, or the future of their scattered copy
        self.size = 1
        self.tries = 0  # runs again after its worker died (see retries)
        self.deadline: float | None = None
        self.future: Any = None
        # Set on a task that re-runs some items of a chunk whose worker died
        # (see _DaskCoordinator._isolate): which, and the chunk's results so far.
        self.redo: _Redo | None = None

    @property
    def count(self) -> int:
        """How many items it runs."""
        return self.size if self.redo is None else len(self.redo.offsets)

    def describe(self) -> str:
        """Which part of its call this task is (its item, if it runs one), for errors."""
        offsets = self.redo.offsets if self.redo is not None else range(self.size)
        return self.job.describe(self.index, offsets[0] if len(offsets) == 1 else None)


class _DaskCoordinator(_EngineBase):
    """Runs a pool's calls on a Dask cluster; see the module docstring."""

    def __init__(
        self,
        cluster: _Cluster,
        processes: int,
        initializer: Callable[..., Any] | None,
        initargs: Iterable[Any],
        wrap_exception: bool,
        cache: _PoolCache,
        *,
        task_timeout: float | None = None,
        retries: int = 0,
    ) -> None:
        self._cluster = cluster
        self._client = cluster.client
        self._processes = processes
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._init_data: Any = None
        self._cache = cache
        self._retries = retries
        self._id = f"mp-{uuid.uuid4().hex}"
        self.pool: list[Any] = []  # no worker processes of ours (Pool._pool)
        self.broken: BrokenPoolError | None = None

        self._cond = threading.Condition(threading.Lock())
        self._jobs: collections.deque[_Job] = collections.deque()
        self._running: dict[str, _DaskTask] = {}  # by Dask key: handed over, not yet done
        # Items of chunks whose worker died, to run again one at a time (see
        # _isolate); _isolating is the one handed over, if any.
        self._suspects: collections.deque[_DaskTask] = collections.deque()
        self._isolating: _DaskTask | None = None
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._functions = _PickledFunctions()
        self._scattered: dict[int, Any] = {}  # _PickledFunction.key -> scattered future
        self._accepting = True
        self._closing = False
        self._terminating = False
        self._feeder_waiting = False
        self._feeder_done = False  # the feeder has handed over everything it will
        self._shut = False
        self._shut_lock = threading.Lock()
        self._feeder: threading.Thread | None = None
        self._collector: threading.Thread | None = None

    # -- the engine interface ---------------------------------------------------

    def start_workers(self) -> None:
        pass  # Dask's workers are the cluster's

    def start(self) -> None:
        self._feeder = threading.Thread(target=self._feed, name="DaskPoolFeeder", daemon=True)
        self._collector = threading.Thread(
            target=self._collect, name="DaskPoolCollector", daemon=True
        )
        self._feeder.start()
        self._collector.start()

    def wake(self) -> None:
        self._done.put(None)  # the collector looks again whether everything is done

    def terminate(self, wait: bool = True) -> None:
        """Fail pending tasks, cancel their Dask futures, close a cluster we own.

        ``wait=False`` (the pool was garbage-collected, maybe on one of our
        threads or under a result's lock): do it on a new thread.
        """
        if not wait:
            try:
                _thread.start_new_thread(self.terminate, ())
            except RuntimeError:
                pass  # the interpreter is shutting down: the daemon threads go with it
            return
        with self._cond:
            self._terminating = True
            tasks = list(self._running.values())
            self._running.clear()
            jobs = self._take_queued()
        self._done.put(_STOP)
        self._cancel([t.future for t in tasks])
        self._fail_all(jobs, self._terminated_error)
        current = threading.current_thread()
        for thread in (self._collector, self._feeder):
            if thread is not None and thread is not current:
                # The feeder may be inside the caller's own iterable: don't wait long.
                thread.join(None if thread is self._collector else 1.0)
        self._shutdown()

    def join(self) -> None:
        current = threading.current_thread()
        for thread in (self._feeder, self._collector):
            if thread is not None and thread is not current:
                util.wait_interruptibly(functools.partial(_join, thread), None)

    # -- the feeder thread ------------------------------------------------------

    def _limit(self, job: _Job) -> int:
        threads = max(1, self._processes)
        return threads if job.timeout is not None else _IN_FLIGHT_PER_THREAD * threads

    def _has_room(self, job: _Job) -> bool:
        return len(self._running) < self._limit(job)

    def _fed_all(self) -> None:
        self._done.put(None)

    def _feed_job(self, job: _Job) -> None:
        drawn = job.draw()
        if drawn is None:
            return
        index, payload = drawn
        serializer = job.serializer
        assert serializer is not None
        if self._initializer is not None and self._init_data is None:
            try:
                data = serializer.dumps((self._initializer, self._initargs))
            except Exception as e:  # noqa: BLE001 - the pool cannot start its workers
                self._break(e, "could not be pickled:")
                return
            self._init_data = self._share(data)
        try:
            body = serializer.dumps(payload)
        except Exception as e:  # noqa: BLE001 - the task's error
            job.result._set(index, (False, _explain_task_pickling_error(job, index, payload, e)))
            return
        entry = job.fentry
        if entry is None:
            try:
                entry = job.fentry = self._functions.acquire(job.func, serializer)  # once per call
            except Exception as e:  # noqa: BLE001 - the whole call fails
                where = f"{job.api}({_callable_name(job.func)})"
                job.fail(index, _pickling_failure(e, f"cannot serialize the function of {where}"))
                return
        else:
            self._functions.retain(entry)
        task = _DaskTask(job, index, body, f"{self._id}-{entry.key}", self._function_data(entry))
        if job.kind == _MAP or job.kind == _STARMAP:
            task.size = len(payload)
        self._send(task)

    def _share(self, data: bytes) -> Any:
        """``data`` itself if small, else the future of its scattered copy."""
        if len(data) < _SCATTER_AT:
            return data
        # broadcast=False: Dask copies it to each worker that runs a task using it, once.
        return self._client.scatter(data, broadcast=False, hash=False)

    def _function_data(self, entry: _PickledFunction) -> Any:
        with self._cond:
            shared = self._scattered.get(entry.key)
        if shared is None:
            shared = self._share(entry.data)
            if shared is not entry.data:
                with self._cond:
                    self._scattered[entry.key] = shared
        return shared

    def _send(self, task: _DaskTask) -> None:
        job = task.job
        subset = {} if task.redo is None else {"subset": task.redo.offsets}
        if job.timeout is not None:
            # A chunk of n items may run n times the timeout of one.
            task.deadline = time.monotonic() + job.timeout * task.count
        assert job.serializer is not None
        key = f"{_callable_name(job.func)[:40]}-{self._id}-{next(_task_numbers)}"
        with self._cond:
            if self._terminating:
                return
            task.future = future = self._client.submit(
                run_chunk,
                self._id,
                self._init_data,
                task.fkey,
                task.fdata,
                job.kind,
                job.serializer.name,
                task.body,
                key=key,
                pure=False,
                **subset,
            )
            self._running[future.key] = task
        future.add_done_callback(self._done.put)
        if task.deadline is not None:
            self._done.put(None)  # the collector waits for this deadline too

    # -- the collector thread ---------------------------------------------------

    def _collect(self) -> None:
        try:
            while True:
                try:
                    item = self._done.get(timeout=self._until_deadline())
                except queue.Empty:
                    item = None  # a deadline passed
                if item is _STOP:
                    return
                batch = [item]
                while True:
                    try:
                        batch.append(self._done.get_nowait())
                    except queue.Empty:
                        break
                if _STOP in batch:
                    return
                self._receive([f for f in batch if f is not None])
                self._check_deadlines()
                with self._cond:
                    finished = (
                        self._feeder_done
                        and not self._running
                        and not self._suspects
                        and self._isolating is None
                    )
                if finished:
                    self._shutdown()
                    return
        except BaseException as e:  # noqa: BLE001 - never leave callers waiting
            self._internal_error(e)
            self._shutdown()

    def _receive(self, futures: list[Any]) -> None:
        finished: list[tuple[Any, _DaskTask]] = []
        for future in futures:
            with self._cond:
                task = self._running.get(future.key)
                if task is None or task.future is not future:
                    continue  # timed out or terminated already
            status = future.status
            if status == "finished":
                finished.append((future, task))
            else:
                self._failed(future, task, status)
        if not finished:
            return
        # One round trip for the batch; one by one if that fails.
        try:
            datas = self._client.gather([f for f, _ in finished])
        except Exception:  # noqa: BLE001
            datas = None
        for n, (future, task) in enumerate(finished):
            if datas is not None:
                data = datas[n]
            else:
                try:
                    data = future.result()
                except BaseException as e:  # noqa: BLE001 - the task's error
                    self._failed(future, task, future.status, e)
                    continue
            if self._settle(future):
                self._deliver_bytes(task, data)

    def _settle(self, future: Any) -> bool:
        """Take the task of ``future`` out of the running ones; False if it was already."""
        with self._cond:
            task = self._running.pop(future.key, None)
            if task is not None:
                self._cond.notify_all()  # the feeder may hand over another task
        return task is not None

    def _deliver_bytes(self, task: _DaskTask, data: bytes) -> None:
        try:
            ok, value = reduction.loads(data)
        except Exception as e:  # noqa: BLE001 - the task's error
            error = ResultUnpicklingError(e)
            error.__cause__ = e
            ok, value = False, error
        if ok is None:
            self._release(task)
            self._break(value, "raised", " on a Dask worker")
            return
        self._deliver(task, (ok, value))

    def _deliver(self, task: _DaskTask, outcome: tuple[bool, Any]) -> None:
        """The outcome the worker sent for ``task`` (an item's exception fails its chunk)."""
        self._release(task)
        ok, value = outcome
        redo = task.redo
        if not ok:
            name_item(value, task.job, task.index, offsets=None if redo is None else redo.offsets)
        if redo is None:
            task.job.result._set(task.index, outcome)
        else:
            redo.done(task.job, task.index, ok, value)
        self._settled(task)

    def _fail(self, task: _DaskTask, error: BaseException) -> None:
        """``task`` failed as a whole (its worker died, a timeout...): its items fail alone."""
        self._release(task)
        if task.redo is None:
            task.job.result._set(task.index, (False, error))
        else:
            task.redo.failed(task.job, task.index, error)
        self._settled(task)

    def _isolate(self, future: Any, task: _DaskTask, exc: BaseException) -> bool:
        """The worker of the chunk ``task`` died: run each of its items again alone.

        Dask cannot tell which item a worker was running when it died, and a
        dead worker takes with it every task it held, not only the one that
        killed it.  So the items run again one at a time, each as a Dask task
        of its own, one after the other across the pool (``_suspects``), and
        one that dies gets a second run: an item fails alone only once it has
        killed two workers, running alone each time; the others return.
        False if ``task`` runs a single item (fail it).
        """
        job = task.job
        if (job.kind != _MAP and job.kind != _STARMAP) or task.count < 2:
            return False
        if not self._settle(future):
            return True
        redos = _isolate(
            job, task.index, task.redo, task.size, -1, lambda k: _killed_worker_error(exc, task)
        )
        assert job.fentry is not None
        for n, redo in enumerate(redos):
            if n:
                self._functions.retain(job.fentry)  # the first takes the dead task's
            again = _DaskTask(job, task.index, task.body, task.fkey, task.fdata)
            again.size, again.redo = task.size, redo
            self._suspects.append(again)
        self._next_suspect()
        return True

    def _next_suspect(self) -> None:
        """Hand over the next item to run alone, unless one runs (collector thread)."""
        if self._isolating is None and self._suspects:
            self._isolating = self._suspects.popleft()
            self._send(self._isolating)

    def _settled(self, task: _DaskTask) -> None:
        if task is self._isolating:
            self._isolating = None
            self._next_suspect()

    def _failed(self, future: Any, task: _DaskTask, status: str, exc: Any = None) -> None:
        if status == "error" and exc is None:
            try:
                exc = future.exception(timeout=30)
            except BaseException as e:  # noqa: BLE001
                exc = e
        if self._terminating:
            return
        if _is_killed_worker(exc):
            # An item run alone (see _isolate) gets a second run whatever retries says.
            if task.tries < (
                self._retries if task is not self._isolating else max(self._retries, 1)
            ):
                task.tries += 1
                with self._cond:
                    self._running.pop(future.key, None)
                self._send(task)
                return
            if self._isolate(future, task, exc):
                return
            error: BaseException = _killed_worker_error(exc, task)
        elif status in ("cancelled", "lost"):
            error = TerminatedWorkerError(
                f"Dask {status} {task.describe()}: the scheduler at "
                f"{self._cluster.address} was lost, or someone cancelled the task or "
                f"closed the pool's client. Check that the scheduler runs, and make a new pool."
            )
        else:
            error = TerminatedWorkerError(
                f"Dask failed to run {task.describe()}: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
        if self._settle(future):
            self._fail(task, error)

    def _until_deadline(self) -> float | None:
        with self._cond:
            deadlines = [t.deadline for t in self._running.values() if t.deadline is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic()) + 0.001

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        with self._cond:
            late = [
                t for t in self._running.values() if t.deadline is not None and t.deadline <= now
            ]
            for task in late:
                del self._running[task.future.key]
            if late:
                self._cond.notify_all()
        if not late:
            return
        self._cancel([t.future for t in late])
        for task in late:
            limit = task.job.timeout
            assert limit is not None
            others = (
                "the pool's other tasks" if task.job.kind == _APPLY else "the call's other items"
            )
            size = f" ({task.count} items: {task.count} times that)" if task.count > 1 else ""
            error = TaskTimeoutError(
                f"{task.describe()} was still running after its task_timeout of "
                f"{limit:g} s{size}: the pool cancelled its Dask task, and {others} go on. "
                f"Dask cannot stop a running thread: the function may run on in its worker "
                f"until it returns, keeping that worker's thread busy."
            )
            error.timeout = limit  # type: ignore[attr-defined]
            self._fail(task, error)

    # -- ending -------------------------------------------------------------------

    def _release(self, task: _DaskTask) -> None:
        entry = task.job.fentry
        if entry is None:
            return
        self._functions.release(entry)
        if entry.uses <= 0:
            with self._cond:
                self._scattered.pop(entry.key, None)  # Dask frees it with its last future

    def _cancel(self, futures: list[Any]) -> None:
        futures = [f for f in futures if f is not None]
        if futures:
            with contextlib.suppress(Exception):  # the client may be closing already
                self._client.cancel(futures)

    def _break(self, exc: BaseException, what: str, where: str = "") -> None:
        error = self._initializer_error(exc, what, where)
        with self._cond:
            if self.broken is not None:
                return
            self.broken = error
            tasks = list(self._running.values())
            self._running.clear()
            jobs = self._take_queued()
        self._cancel([t.future for t in tasks])
        self._fail_all(jobs, self._broken_error)
        self._done.put(None)

    def _internal_error(self, exc: BaseException) -> None:
        util.debug("dask pool engine failed: %r", exc)
        error = BrokenPoolError(f"the Dask pool's engine failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        with self._cond:
            if self.broken is None:
                self.broken = error
            jobs = self._take_queued()
        self._fail_all(jobs, self._broken_error)

    def _shutdown(self) -> None:
        """Drop what the workers keep for us; close the client and cluster if ours."""
        with self._shut_lock:
            if self._shut:
                return
            self._shut = True
        with self._cond:
            self._scattered.clear()
        self._functions.clear()
        if not self._cluster.owned or self._cluster.cluster is None:
            # A cluster that lives on: its workers forget this pool's functions
            # (best effort: the scheduler may be gone).
            with contextlib.suppress(Exception):
                self._client.run(forget_pool, self._id)
        self._cluster.close()


def _join(thread: threading.Thread, timeout: float | None) -> bool:
    """``thread.join(timeout)``; True once it has ended (for ``util.wait_interruptibly``)."""
    thread.join(timeout)
    return not thread.is_alive()


def _is_killed_worker(exc: Any) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _killed_worker_error(exc: BaseException, task: _DaskTask) -> TerminatedWorkerError:
    """The error of a task whose Dask worker died: names the worker's address."""
    worker = getattr(exc, "last_worker", None)
    address = getattr(worker, "address", worker)
    if not isinstance(address, str):
        found = re.search(r"[a-z]+://[\w.\-\[\]:]+", str(exc))
        address = found.group(0).rstrip(".") if found else "(unknown address)"
    error = TerminatedWorkerError(
        f"The Dask worker {address} died while running {task.describe()} "
        f"(its process was killed or crashed: the Operating System's out-of-memory "
        f"killer, a segmentation fault, os._exit() or kill -9). The pool goes on with "
        f"the other workers (a nanny restarts the worker it watches); pass retries=1 to "
        f"run a task again once when its worker dies."
    )
    error.address = address  # type: ignore[attr-defined]
    error.__cause__ = exc
    return error
