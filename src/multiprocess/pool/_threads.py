"""The engine of a ``ThreadPool``: ``_ThreadCoordinator`` (layer 5).

Worker threads draw tasks from the calls themselves; nothing is pickled.
"""

from __future__ import annotations

import _thread
import collections
import threading
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from ._engine import _EngineBase
from ._exceptions import BrokenPoolError
from ._jobs import _Job
from ._notes import _failed_item, name_item
from ._results import _PoolCache
from ._worker import _run_task, _task_items


class _ThreadCoordinator(_EngineBase):
    """Runs a ThreadPool: worker threads draw tasks from the calls themselves."""

    def __init__(
        self,
        processes: int,
        initializer: Callable[..., Any] | None,
        initargs: Iterable[Any],
        wrap_exception: bool,
        cache: _PoolCache,
    ) -> None:
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._cache = cache
        self.pool: list[Any] = []
        self._cond = threading.Condition(threading.Lock())
        self._draw_lock = threading.Lock()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._accepting = True
        self._closing = False
        self._terminating = False
        self.broken: BrokenPoolError | None = None

    def start_workers(self) -> None:
        from ..dummy import DummyProcess

        while len(self.pool) < self._processes:
            t = DummyProcess(target=self._work)
            t.name = t.name.replace("Process", "PoolWorker")
            t.daemon = True
            t.start()
            self.pool.append(t)

    def start(self) -> None:
        pass

    def terminate(self, wait: bool = True) -> None:
        """Fail pending tasks and stop the threads after their current task (no waiting).

        ``wait=False`` (the pool was garbage-collected, on any thread and maybe
        inside a result's lock or ``_cond``, see ``_Coordinator._stop_soon``):
        do it on a new thread, which holds none of them.  ``_thread`` starts it
        without taking any of ``threading``'s locks.
        """
        if not wait:
            try:
                _thread.start_new_thread(self.terminate, ())
            except RuntimeError:
                pass  # the interpreter is shutting down: the daemon threads go with it
            return
        with self._cond:
            self._terminating = True
            jobs = self._take_queued()
        self._fail_all(jobs, self._terminated_error)

    def join(self) -> None:
        current = threading.current_thread()
        for t in list(self.pool):
            if t is not current:
                t.join()

    def _work(self) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as e:  # noqa: BLE001 - breaks the pool
                self._break(e)
                return
        while True:
            with self._cond:
                while not self._jobs and not (self._closing or self._terminating or self.broken):
                    self._cond.wait()
                if self._terminating or self.broken is not None or not self._jobs:
                    return
                job = self._jobs[0]
            with self._draw_lock:
                drawn = job.draw()
            if drawn is None:
                with self._cond:
                    if self._jobs and self._jobs[0] is job:
                        self._jobs.popleft()
                job = None  # type: ignore[assignment]  # (it holds the call's inputs and results)
                continue
            # The call may have more tasks: wake an idle thread to draw the next one
            # (submit() woke only one, so that a call of one task wakes one thread).
            with self._cond:
                self._cond.notify()
            index, payload = drawn
            if job.cancelled:
                # Cancelled while it was being drawn: the task never runs.
                job = drawn = payload = None  # type: ignore[assignment]
                continue
            items = _task_items(job.kind, payload)
            try:
                result: tuple[bool, Any] = (True, _run_task(job.func, job.kind, items))
            except BaseException as e:  # noqa: BLE001 - the task's error, like concurrent.futures
                if isinstance(e, Exception):
                    name_item(e, job, index, _failed_item(job.kind, payload, items))
                result = (False, e)
            job.result._set(index, result)
            job = drawn = payload = items = result = None  # type: ignore[assignment]

    def _break(self, exc: BaseException) -> None:
        error = self._initializer_error(exc, "raised")
        with self._cond:
            if self.broken is not None:
                return
            self.broken = error
            jobs = self._take_queued()
        self._fail_all(jobs, self._broken_error)
