"""What every engine of a pool shares: taking calls, feeding them, refusing and failing them (layer 5).

An engine (``_Coordinator`` for processes, ``_ThreadCoordinator`` for threads,
``multiprocess.dask``'s ``_DaskCoordinator``) keeps the calls it was given in
``_jobs``, under ``_cond``, until its feeder (``_feed``) or workers draw their
tasks.
"""

from __future__ import annotations

from ._exceptions import BrokenPoolError, PoolTerminatedError, _callable_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    import collections
    import threading
    from typing import Any, Callable

    from ._jobs import _Job


class _EngineBase:
    """``submit``, ``close`` and the errors of a pool that takes no more calls."""

    _cond: threading.Condition
    _jobs: collections.deque[_Job]
    _accepting: bool
    _closing: bool
    _terminating: bool
    _initializer: Callable[..., object] | None
    _feeder_waiting: bool  # the feeder waits on _cond for room or calls
    _feeder_done: bool  # the feeder has handed over everything it will
    _cache: dict[int, Any]  # the pool's pending results, by job id
    broken: BrokenPoolError | None

    def wake(self) -> None:
        """Have the engine look at its state again (no-op where threads wait on ``_cond``)."""

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` now; an engine that handles results in rounds may call it after the round.

        For what a result's callback does that is worth doing once for many
        results at a time (the executor's hand-over of the next calls).
        """
        fn()

    def _prepare(self, job: _Job) -> None:
        """What the engine must know of a call before it queues it (nothing here)."""

    def submit(self, job: _Job) -> None:
        """Queue ``job``; a pool that takes no more calls fails it at once."""
        self._prepare(job)
        with self._cond:
            if self._accepting:
                self._jobs.append(job)
                self._cond.notify()
                return
            exc = self._refusal()
        job.result._abandon(exc)

    def _refusal(self) -> BaseException:
        if self.broken is not None:
            return self._broken_error()
        if self._terminating:
            return PoolTerminatedError("the pool was terminated")
        return ValueError("Pool not running")

    def _broken_error(self) -> BrokenPoolError:
        """A fresh copy of the error that broke the pool (each caller raises its own)."""
        assert self.broken is not None
        error = BrokenPoolError(*self.broken.args)
        error.__cause__ = self.broken.__cause__
        return error

    # -- the feeder thread, in engines that have one --------------------------

    def _has_room(self, job: _Job) -> bool:
        """Whether the feeder may draw more of ``job`` now (hold ``_cond``)."""
        raise NotImplementedError

    def _feed_job(self, job: _Job) -> None:
        """Draw and hand over what there is room for of ``job`` (not holding ``_cond``)."""
        raise NotImplementedError

    def _fed_all(self) -> None:
        """Called once the feeder has stopped (for good)."""

    def _internal_error(self, exc: BaseException) -> None:
        raise NotImplementedError

    def _feed(self) -> None:
        """The feeder thread: the queued calls' tasks, oldest call first, while there is room.

        It stops when the pool is terminated or broken, or closed with no
        call left.  A call leaves the queue once it has drawn its last task.
        """
        try:
            while True:
                with self._cond:
                    while True:
                        if self._terminating or self.broken is not None:
                            return
                        if self._jobs and self._has_room(self._jobs[0]):
                            break
                        if self._closing and not self._jobs:
                            return
                        self._feeder_waiting = True
                        self._cond.wait()
                        self._feeder_waiting = False
                    job = self._jobs[0]
                # Outside the lock: this runs the caller's iterable and pickler.
                self._feed_job(job)
                if job.done:
                    with self._cond:
                        if self._jobs and self._jobs[0] is job:
                            self._jobs.popleft()
                job = None  # type: ignore[assignment]
        except BaseException as e:  # noqa: BLE001 - never leave callers waiting
            self._internal_error(e)
        finally:
            with self._cond:
                self._feeder_done = True
                self._feeder_waiting = False
            self._fed_all()

    # -- breaking and failing --------------------------------------------------

    def _initializer_error(self, exc: BaseException, what: str, where: str = "") -> BrokenPoolError:
        """What breaks the pool when its initializer ``what`` (raised, ...) ``exc`` ``where``."""
        error = BrokenPoolError(
            f"the pool's initializer {_callable_name(self._initializer)} {what} "
            f"{type(exc).__name__}: {exc}{where}. Every pending and future task of this "
            f"pool fails; fix the initializer (its error is the cause below) and make a new pool."
        )
        error.__cause__ = exc
        return error

    def _take_queued(self) -> list[_Job]:
        """Take no more calls and take out the queued ones (hold ``_cond``)."""
        self._accepting = False
        jobs = list(self._jobs)
        self._jobs.clear()
        self._cond.notify_all()
        return jobs

    def _fail_all(self, jobs: list[_Job], make_error: Callable[[], BaseException]) -> None:
        """Fail every pending result and those of ``jobs``, each with its own error."""
        for result in list(self._cache.values()):
            result._abandon(make_error())
        for job in jobs:
            job.result._abandon(make_error())

    def _terminated_error(self) -> PoolTerminatedError:
        return PoolTerminatedError("the pool was terminated before this task finished")

    def close(self) -> None:
        """Take no more calls; those queued still run."""
        with self._cond:
            self._accepting = False
            self._closing = True
            self._cond.notify_all()
        self.wake()
