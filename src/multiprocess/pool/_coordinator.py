"""The engine of a process pool: ``_Coordinator`` (layer 5).

The coordinator owns the worker processes and knows which worker holds
which task (see the package docstring for the picture).  It runs two
threads: the feeder turns calls into pickled tasks, and the coordinator
thread waits with one persistent ``select.poll`` object on the result pipes,
the worker sentinels and a wake-up pipe, and never blocks on one worker.
A call made on the coordinator thread itself (the executor hands over its
next calls there as results come in, see ``call_soon``) skips the feeder
when making its tasks runs no user code (``_take_small``).

It is one object in three modules, each a part of its methods on the same
state (which ``_Coordinator.__init__`` sets up, and each part lists)::

  _coordinator    _Coordinator: the calls from any thread (submit, close,
                  terminate, join), the feeder thread, the coordinator
                  thread's loop, failures and shutdown
  _task_control   _TaskControl: task_timeout, memory limits, a worker's death
                  inside a chunk (its item fails alone), the errors of dead tasks
  _dispatch       _Worker and _Dispatch: starting workers, giving them tasks,
                  reading their results, accounting for a worker that exits
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time
from collections.abc import Iterable
from pickle import dumps

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import connection, reduction, spawn, util
from .._forklock import FORK_LOCK
from . import _oob
from ._dispatch import _TERMINATE_GRACE, _Dispatch, _Worker
from ._engine import _EngineBase
from ._exceptions import (
    BrokenPoolError,
    _callable_name,
    _describe_exitcode,
    _pickling_failure,
)
from ._functions import _PickledFunctions
from ._jobs import _explain_task_pickling_error, _Job, _Task
from ._limits import _rss_reader
from ._oob import pack
from ._record import _Records
from ._results import _PoolCache
from ._task_control import _show, _TaskControl
from ._wire import _APPLY, _MAP, _STARMAP, _frame_parts


class _Coordinator(_EngineBase, _Dispatch, _TaskControl):
    """Owns a process pool's workers and tasks; see the module docstring.

    Runs two threads: ``_feed`` turns calls into pickled tasks, ``_run`` gives
    them to workers, collects results and handles workers that exit.  All
    worker bookkeeping happens on the ``_run`` thread; callers talk to it
    through ``submit``, ``close``, ``terminate`` and ``join``.  Its traffic
    with the workers is in ``_Dispatch``, its task control in ``_TaskControl``.
    """

    def __init__(
        self,
        ctx: Any,
        process_factory: Callable[..., Any],
        processes: int,
        initializer: Callable[..., Any] | None,
        initargs: Iterable[Any],
        maxtasks: int | None,
        wrap_exception: bool,
        cache: _PoolCache,
        *,
        task_timeout: float | None = None,
        memory_limit: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self._ctx = ctx
        self._process_factory = process_factory
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasks = maxtasks
        self._wrap_exception = wrap_exception
        self._cache = cache
        self.pool: list[Any] = []  # the live worker Process objects (Pool._pool)
        self._workers: dict[int, _Worker] = {}  # by sentinel fd

        # Calls not yet fully drawn, and the pickled tasks ready to send.
        self._cond = threading.Condition(threading.Lock())
        self._jobs: collections.deque[_Job] = collections.deque()
        self._ready: collections.deque[_Task] = collections.deque()
        self._ready_high = max(64, 16 * processes)
        self._fed_bytes = 0  # written by the feeder only
        self._sent_bytes = 0  # written by the coordinator only
        self._feeder_waiting = False
        # Large buffers of tasks, functions and results go out of band where
        # memfds and side channels exist (see _oob).
        self._oob = _oob.ENABLED
        self._functions = _PickledFunctions(self._oob)

        self._accepting = True
        self._closing = False
        self._terminating = False
        self._feeder_done = False
        self._stopping_workers = False
        self.broken: BrokenPoolError | None = None
        self._startup_deaths = 0
        self._last_pid: int | None = None
        self._last_exitcode: int | None = None

        # A self-pipe wakes the coordinator; writes are skipped while one is pending.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._wake_lock = threading.Lock()  # against writing to a closed (reused) fd
        self._thread: threading.Thread | None = None
        self._feeder: threading.Thread | None = None
        self._starting: _Worker | None = None
        # What call_soon deferred while the coordinator thread handles a round
        # of results (its identity, _thread_id, known once it runs).
        self._soon: dict[Callable[[], object], None] = {}
        self._in_round = False
        # The function entries of the tasks answered in the round, released after it.
        self._done_entries: list[Any] = []
        self._thread_id: int | None = None

        # Task control (see _task_control).  The record has a slot per
        # worker that may run at once; _watching turns on the watch of running
        # items (_watch) once a call has a timeout or a memory limit is set.
        self._records = _Records(max(processes, 1))
        self._memory_limit = memory_limit
        self._soft_memory_limit = max_memory_per_child
        self._rss = _rss_reader() if memory_limit or max_memory_per_child else None
        self._watching = task_timeout is not None or memory_limit is not None
        self._next_memory_check = 0.0
        # Forked children (our workers included) must not keep our ends of the
        # pipes open, or a worker would not see EOF when the parent dies.
        util.register_after_fork(self, _Coordinator._close_in_child)

    # -- called from any thread ---------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="PoolCoordinator", daemon=True)
        self._feeder = threading.Thread(target=self._feed, name="PoolFeeder", daemon=True)
        self._thread.start()
        self._feeder.start()

    def _prepare(self, job: _Job) -> None:
        if job.timeout is not None:
            self._watching = True
        if self._memory_limit is not None and job.chunksize > 1:
            job.track = True  # a worker killed for its memory: which item was it?

    def submit(self, job: _Job) -> None:
        """Queue ``job``; on the coordinator thread, a small call goes straight to the workers."""
        if threading.get_ident() == self._thread_id and self._take_small(job):
            return
        super().submit(job)

    def _take_small(self, job: _Job) -> bool:
        """Make the tasks of ``job`` here, without the feeder, if it is small (see below).

        The executor hands over its next calls on this thread, as results
        come in (see ``call_soon``): going through the feeder would cost a
        switch to its thread and back for each round.  Only calls whose
        making runs no user code and takes next to no time qualify: applies
        of a function pickled for calls still in flight, with plain small
        arguments (pickled by the C pickler), and only when the feeder has no
        call left before them (the order of calls is kept).  Returns False
        for any other call, which goes to the feeder.
        """
        payloads = job._payloads  # not drawn yet: the job was just made
        serializer = job.serializer
        if (
            job.kind != _APPLY
            or type(payloads) is not list
            or len(payloads) > self._ready_high
            or serializer is None
            or not serializer._plain_shortcut  # its pickler could run user code
        ):
            return False
        for payload in payloads:
            if not _small_plain(payload):
                return False
        with self._cond:
            if self._jobs or not self._accepting:
                return False
            entry = self._functions.reuse(job.func, serializer)
            if entry is None:
                return False
        self._prepare(job)
        job.fentry = entry
        job._payloads = None
        ready = self._ready
        for index, payload in enumerate(payloads):
            if index:
                self._functions.retain(entry)
            # Plain (see _small_plain): the bytes every serializer makes.
            task = _Task(job, index, dumps(payload, reduction.DEFAULT_PROTOCOL), entry)
            if job.timeout is not None or self._memory_limit is not None:
                task.shown = _show(_APPLY, payload)
            # Counted as fed and not yet sent on this thread's own count
            # (the feeder's, _fed_bytes, is the feeder's alone).
            self._sent_bytes -= task.nbytes
            ready.append(task)
        job.end(len(payloads))
        return True

    def wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with self._wake_lock:
                if self._wake_w >= 0:
                    try:
                        os.write(self._wake_w, b"\0")
                    except OSError:
                        pass  # full: it wakes up anyway

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` now, or once the round of results being handled is done.

        On the coordinator thread, while it handles what its poll returned
        (results, exits), ``fn`` waits for the end of that round, and is
        called once however often it was given (functions that compare equal).
        """
        if self._in_round and threading.get_ident() == self._thread_id:
            self._soon[fn] = None
        else:
            fn()

    def _run_soon(self) -> None:
        while self._soon:
            fn = next(iter(self._soon))
            del self._soon[fn]
            fn()
        entries, self._done_entries = self._done_entries, []
        for entry in entries:
            self._functions.release(entry)

    def terminate(self, wait: bool = True) -> None:
        """Stop now: kill the workers and fail every pending task.

        Returns once that is done, unless called from one of the pool's own
        threads (a callback), where the coordinator finishes it after the
        callback returns.  ``wait=False`` (the pool was garbage-collected)
        only asks the coordinator thread to do it: see ``_stop_soon``.
        """
        util.debug("terminating pool")
        if not wait:
            self._stop_soon()
            return
        with self._cond:
            self._accepting = False
            self._terminating = True
            self._cond.notify_all()
        self.wake()
        current = threading.current_thread()
        if self._thread is None:
            # Never started (Pool.__init__ failed): clean up here.
            self._kill_workers()
            self._close_fds()
            return
        if current is not self._thread and current is not self._feeder:
            self._thread.join()
            if self._feeder is not None and self._feeder.is_alive():
                # It may be inside the caller's own iterable; don't wait long.
                self._feeder.join(_TERMINATE_GRACE)

    def _stop_soon(self) -> None:
        """Ask the coordinator thread to terminate the pool, from any thread, at any point.

        The garbage collector runs a collected pool's finalizer on whatever
        thread dropped the last reference or allocated at the wrong moment:
        maybe the coordinator thread itself, in the middle of setting a
        result, or a thread that holds a result's lock or ``_cond``.  So this
        takes no lock that may be held (the wake-up lock only if free: whoever
        holds it is writing a wake-up) and waits for nothing; the coordinator
        sees the flag at the top of its loop and does the rest.
        """
        self._accepting = False
        self._terminating = True
        self._wake_pending = True
        if self._wake_lock.acquire(False):
            try:
                if self._wake_w >= 0:
                    os.write(self._wake_w, b"\0")
            except OSError:
                pass  # full: it wakes up anyway
            finally:
                self._wake_lock.release()

    def join(self) -> None:
        current = threading.current_thread()
        for thread in (self._thread, self._feeder):
            if thread is not None and thread is not current:
                if thread is self._feeder and self._terminating:
                    thread.join(_TERMINATE_GRACE)
                else:
                    util.wait_interruptibly(_joined(thread), None)
        for p in list(self.pool):
            p.join()

    def start_workers(self) -> None:
        """Start workers until there are ``processes`` of them (caller's thread, at init)."""
        while len(self.pool) < self._processes:
            self._start_worker()

    # -- the feeder thread ----------------------------------------------------

    def _has_room(self, job: _Job) -> bool:
        return len(self._ready) < self._ready_high and (
            self._fed_bytes - self._sent_bytes < 64 << 20
        )

    def _fed_all(self) -> None:
        self.wake()

    def _feed_job(self, job: _Job) -> None:
        while not job.done and len(self._ready) < self._ready_high:
            if self._terminating:
                return
            drawn = job.draw()
            if drawn is None:
                return
            index, payload = drawn
            task = self._pickle_task(job, index, payload)
            drawn = payload = None
            if task is not None:
                self._fed_bytes += task.nbytes
                self._ready.append(task)
                self.wake()

    def _pickle_task(self, job: _Job, index: int, payload: Any) -> _Task | None:
        serializer = job.serializer
        assert serializer is not None
        oob = None
        try:
            if self._oob:
                if job.oob_memo is None:
                    job.oob_memo = {}
                body, oob = pack(serializer, payload, job.oob_memo, recycle=True)
            else:
                body = serializer.dumps(payload)
        except Exception as e:  # noqa: BLE001 - the task's error
            job.result._set(index, (False, _explain_task_pickling_error(job, index, payload, e)))
            return None
        entry = job.fentry
        if entry is None:
            try:
                entry = job.fentry = self._functions.acquire(job.func, serializer)  # once per call
            except Exception as e:  # noqa: BLE001 - the whole call fails
                where = f"{job.api}({_callable_name(job.func)})"
                job.fail(index, _pickling_failure(e, f"cannot serialize the function of {where}"))
                return None
        else:
            self._functions.retain(entry)
        task = _Task(job, index, body, entry, oob)
        if job.kind == _MAP or job.kind == _STARMAP:
            task.size = len(payload)
        if job.timeout is not None or self._memory_limit is not None:
            task.shown = _show(job.kind, payload)
        return task

    # -- the coordinator thread -----------------------------------------------

    def _run(self) -> None:
        self._thread_id = threading.get_ident()
        try:
            while True:
                if self._terminating or self.broken is not None:
                    break
                self._dispatch()
                self._check_finished()
                if not self._workers and self._stopping_workers:
                    break
                timeout = self._end_unreachable()
                if self._watching:
                    timeout = self._watch(timeout)
                # Result pipes, worker sentinels and the wake-up pipe, together.
                ready = {fd for fd, _event in self._poller.poll(timeout)}
                if self._wake_r in ready:
                    self._drain_wakeups()
                exited = []
                self._in_round = True
                try:
                    for sentinel, w in list(self._workers.items()):
                        if w.out and w.tasks.fileno() in ready:
                            self._write_more(w)
                        if not w.gone and w.results.fileno() in ready:
                            self._receive(w)
                        if sentinel in ready:
                            exited.append(w)
                    for w in exited:
                        self._on_exit(w)
                finally:
                    self._in_round = False
                exited = ready = None  # type: ignore[assignment]
                self._run_soon()
                self._maintain()
        except BaseException as e:  # noqa: BLE001 - never leave callers waiting
            self._internal_error(e)
        finally:
            try:
                self._shutdown()
            finally:
                self._run_soon()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # Cleared after reading: a wake() between the two wrote nothing, and
        # what it announced is handled by the loop that follows.
        self._wake_pending = False

    def _maintain(self) -> None:
        """Replace workers that exited, while there is or may be work."""
        if self._terminating or self.broken is not None or self._stopping_workers:
            return
        while len(self._workers) < self._processes:
            try:
                self._start_worker()
            except Exception as e:  # noqa: BLE001 - cannot start processes: give up
                error = BrokenPoolError(f"the pool could not start a worker process: {e!r}")
                error.__cause__ = e
                self._break(error)
                return

    def _check_finished(self) -> None:
        """After close(): once every call is done, ask the workers to exit."""
        if self._stopping_workers or not self._closing or not self._feeder_done:
            return
        if self._cache or self._ready:
            return
        self._stopping_workers = True
        for w in self._workers.values():
            if not w.closed_in:
                w.closed_in = True
                stop: list[Any] = []
                _frame_parts(stop, ())
                try:
                    self._write(w, stop)
                except OSError:
                    pass

    # -- failures ---------------------------------------------------------------

    def _break_initializer(self, w: _Worker, exc: BaseException) -> None:
        self._break(self._initializer_error(exc, "raised", f" (in worker pid {w.pid})"))

    def _break_startup(self, reached_worker_code: bool) -> None:
        if self._last_exitcode == spawn.NOT_BOOTSTRAPPED_EXITCODE and not reached_worker_code:
            self._break(
                BrokenPoolError(
                    f"the pool's worker process {self._last_pid} stopped while it "
                    f"imported the main module, which starts processes outside the "
                    f'`if __name__ == "__main__":` guard; each worker raised '
                    f"RuntimeError:{spawn.NOT_BOOTSTRAPPED_MESSAGE}"
                )
            )
            return
        code, hint = _describe_exitcode(self._last_exitcode)
        if reached_worker_code:
            cause = (
                f"they died while running the pool's initializer "
                f"{_callable_name(self._initializer)}"
            )
        else:
            cause = (
                "they died before reaching the pool's worker code: a child started "
                "with 'spawn' or 'forkserver' imports the main module and unpickles "
                "the initializer and its arguments first, so an import error or an "
                "object that cannot be unpickled there ends it (the worker's "
                "traceback is on stderr)"
            )
        message = (
            f"the pool's worker processes keep dying while they start "
            f"({self._startup_deaths} in a row, the last one pid {self._last_pid} with "
            f"{code}): {cause}."
        )
        if hint and self._last_exitcode is not None and self._last_exitcode < 0:
            message += " " + hint
        message += " The pool stops starting workers; pending and future tasks fail."
        self._break(BrokenPoolError(message))

    def _break(self, error: BrokenPoolError) -> None:
        if self.broken is not None:
            return
        util.sub_warning("pool broken: %s", error)
        with self._cond:
            self.broken = error
            self._accepting = False
            self._cond.notify_all()
        # The coordinator thread ends its loop, stops the workers and only then
        # fails every task (see _run and _shutdown): the error reaches the
        # caller after the workers' own reports (a traceback, a log record).
        self._ready.clear()
        self.wake()

    def _internal_error(self, exc: BaseException) -> None:
        with FORK_LOCK:  # not imported at start-up: a bug's path
            import traceback

        traceback.print_exc()
        error = BrokenPoolError(f"internal error in the pool: {exc!r}")
        error.__cause__ = exc
        try:
            self._break(error)
        except BaseException:  # noqa: BLE001 - last resort
            self._fail_all([], lambda: error)

    def _kill_workers(self) -> None:
        """SIGTERM every worker, SIGKILL those still there after a grace period, reap all.

        In a broken pool, workers that were still starting first get the same
        grace to end on their own: they are dying of the same cause (an
        initializer that raised, an unguarded main module) and are writing
        their report of it, which a signal would cut short.
        """
        workers = list(self._workers.values())
        pending = [w for w in workers if hasattr(w.process, "sentinel")]
        if self.broken is not None and not self._terminating:
            starting = [w for w in pending if not w.ready]
            for w in workers:
                if w.ready and w.process.exitcode is None:
                    w.process.terminate()
            self._wait_for_exits(starting, time.monotonic() + _TERMINATE_GRACE)
        for w in workers:
            if w.process.exitcode is None:
                w.process.terminate()
        pending = self._wait_for_exits(pending, time.monotonic() + _TERMINATE_GRACE)
        for w in pending:
            w.process.kill()
        for w in workers:
            w.process.join()
            self._forget_worker(w)

    @staticmethod
    def _wait_for_exits(workers: list[_Worker], deadline: float) -> list[_Worker]:
        """Wait until each of ``workers`` exited or ``deadline``; return those still running."""
        pending = list(workers)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            gone = set(connection.wait([w.process.sentinel for w in pending], remaining))
            pending = [w for w in pending if w.process.sentinel not in gone]
        return pending

    def _shutdown(self) -> None:
        if self._terminating or self.broken is not None:
            self._kill_workers()
            self._ready.clear()
            self._functions.clear()
            with self._cond:
                jobs = self._take_queued()
            broken = self.broken is not None
            self._fail_all(jobs, self._broken_error if broken else self._terminated_error)
        self._close_fds()

    def _close_fds(self) -> None:
        with self._wake_lock:
            # Forgotten before closed, as in Connection.close: a fork on
            # another thread must not leave a child that closes a reused number.
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
            for fd in fds:
                if fd >= 0:
                    os.close(fd)

    def _close_in_child(self) -> None:
        # In a forked child: close our ends of every pipe (util.register_after_fork).
        self._wake_lock = threading.Lock()
        for w in self._workers.values():
            for conn in (w.tasks, w.results, w.task_r):
                if conn is not None:
                    conn.close()
        if self._starting is not None:
            # The child being started may be this very process: keep its own
            # end (task_r), close ours.
            self._starting.tasks.close()
            self._starting.results.close()
        self._close_fds()


def _small_plain(payload: Any) -> bool:
    """Whether an apply's ``(args, kwargs)`` are a few small atoms (see ``_take_small``)."""
    if not reduction._is_plain(payload):
        return False
    args, kwargs = payload
    for value in (*args, *kwargs.values()):
        if (type(value) is str or type(value) is bytes) and len(value) > _SMALL_ATOM:
            return False
    return True


# The longest str or bytes argument of a call that the coordinator pickles itself.
_SMALL_ATOM = 1024


def _joined(thread: threading.Thread) -> Callable[[float | None], bool]:
    """``thread.join`` as a wait that tells whether the thread has ended."""

    def join(timeout: float | None) -> bool:
        thread.join(timeout)
        return not thread.is_alive()

    return join
