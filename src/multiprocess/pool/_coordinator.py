"""The engine of a process pool: ``_Coordinator`` and its ``_Worker`` records (layer 5).

The coordinator owns the worker processes and knows which worker holds
which task (see the package docstring for the picture).  It waits with one
persistent ``select.poll`` object on the result pipes, the worker sentinels
and a wake-up pipe, and never blocks on one worker: its ends of the pipes are
non-blocking, a task frame that the pipe does not take at once is written as
the worker reads it (POLLOUT in the same poll), and a long result is read as
it arrives.  So a worker killed half-way through reading a large argument or
writing a large result is seen by its sentinel like any other death.

A worker is sent a second task before finishing the first only when its
recent tasks were short and the frames fit in the pipe's buffer, so that long
tasks are never queued behind each other.

Task control reads each worker's record in shared memory (``_record``): the
number of the task it started last, the item of the chunk it runs and, for a
task with a ``task_timeout``, since when.  A worker that dies (or that the
pool kills: an item past its timeout, a worker above ``memory_limit``) while
running item k of a chunk fails item k alone: the chunk's other items run
again in a new task (``_isolate``), so items before k may run twice.  The poll
wakes for the nearest item deadline, and every ``_MEMORY_POLL`` seconds while
a ``memory_limit`` is set and a worker is busy.
"""

from __future__ import annotations

import collections
import contextlib
import os
import reprlib
import select
import struct
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any, Callable

from .. import connection, reduction, spawn, util
from .._errors import TaskTimeoutError
from ._exceptions import (
    BrokenPoolError,
    MemoryLimitError,
    PoolTerminatedError,
    ResultUnpicklingError,
    _callable_name,
    _describe_exitcode,
    _pickling_failure,
    _worker_death_error,
)
from ._functions import _PickledFunctions
from ._jobs import _ChunkResults, _explain_task_pickling_error, _Job, _Redo, _Task
from ._limits import _format_size, _rss_reader
from ._notes import name_item
from ._record import _Records
from ._results import _ItemFailed, _PartialChunk, _PoolCache
from ._wire import (
    _APPLY,
    _CATCH_ALL,
    _DEFAULT_SERIALIZER_CODE,
    _FUNCTION_CACHE_SIZE,
    _MAP,
    _MSG_READY,
    _MSG_STARTED,
    _ONE,
    _READ_SIZE,
    _SERIALIZER_CODES,
    _STARMAP,
    _SUBSET,
    _TASK_HEADER,
    _TIMED,
    _TRACKED,
    _frame_parts,
    _NonBlockingFrameReader,
    _write_some,
    _writev_some,
)
from ._worker import worker

# Bytes of task frames that may wait unread in a busy worker's pipe.  Below
# every platform's pipe capacity (16 KiB on macOS, 64 KiB on Linux), so that
# tasks sent to a busy worker go into its pipe at once.
_PIPELINE_BUDGET = 8192
# Consecutive workers dying before they are ready that make the pool give up.
_MAX_STARTUP_DEATHS = 3
# How long terminate() lets workers handle SIGTERM before it sends SIGKILL.
_TERMINATE_GRACE = 1.0
# How long a worker may run on once its result pipe has closed (it normally
# exits at that very moment) before the pool kills it: see _end_unreachable.
_UNREACHABLE_GRACE = 5.0
# How often the resident memory of busy workers is read while a memory_limit
# is set (seconds): a worker may go that long above the limit before it is killed.
_MEMORY_POLL = 0.1
# Marks the results of a chunk not known yet (see _ChunkResults).
_MISSING = object()
# Items slower than this (seconds, on average over a task) get tracked in the
# record (see _Job.track): the store it costs per item is then negligible
# (without it, a worker's death inside a chunk costs a re-run of each item).
_TRACK_SLOW_ITEMS = 50e-6
# Short reprs of items for error messages.
_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


class _Worker:
    """A worker process as the coordinator sees it."""

    __slots__ = (
        "assigned",
        "busy_since",
        "closed_in",
        "depth",
        "fault",
        "functions",
        "gone",
        "gone_at",
        "killed_why",
        "out",
        "outstanding",
        "pid",
        "process",
        "reader",
        "ready",
        "results",
        "slot",
        "started",
        "task_r",
        "tasks",
        "unread",
    )

    def __init__(self, process: Any, tasks: Any, results: Any) -> None:
        self.process = process
        self.pid: int | None = None
        self.tasks = tasks  # parent's write end of the task pipe
        # The worker's end of it, kept so that after a death we can tell
        # whether the worker had read its task (see _Coordinator._on_exit).
        self.task_r: Any = None
        self.results = results  # parent's read end of the result pipe (non-blocking)
        self.reader = _NonBlockingFrameReader(results.fileno())
        # Bytes of task frames that the task pipe (non-blocking) did not take
        # yet, oldest first: written when it has room (_Coordinator._write_more).
        self.out: list[memoryview] = []
        # Tasks sent and not answered, oldest first, with their frame sizes:
        # the first is the one the worker is running.
        self.outstanding: collections.deque[tuple[_Task, int]] = collections.deque()
        self.unread = 0  # bytes of the outstanding frames
        self.started = False  # reached the worker() function
        self.ready = False  # initializer done
        self.assigned = 0
        self.functions: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.busy_since = 0.0
        self.depth = 1  # how many tasks it may hold (see _Coordinator._room)
        self.closed_in = False  # no more tasks will be sent
        self.gone = False  # its result pipe reached EOF
        self.gone_at = 0.0  # when (time.monotonic())
        self.killed_why: str | None = None  # the pool killed it, unreachable: why
        self.slot = -1  # its slot in the pool's record (see _record)
        # The pool killed it for a task: ("timeout", task, item, seconds) or
        # ("memory", limit, size) (see _Coordinator._watch).
        self.fault: tuple[Any, ...] | None = None

    def first_seq(self) -> int:
        """The number of ``outstanding[0]`` among the tasks sent to it (the record's SEQ)."""
        return self.assigned - len(self.outstanding) + 1


class _Coordinator:
    """Owns a process pool's workers and tasks; see the module docstring.

    Runs two threads: ``_feed`` turns calls into pickled tasks, ``_run`` gives
    them to workers, collects results and handles workers that exit.  All
    worker bookkeeping happens on the ``_run`` thread; callers talk to it
    through ``submit``, ``close``, ``terminate`` and ``join``.
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
        self._functions = _PickledFunctions()

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

        # Task control (see the module docstring).  The record has a slot per
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

    def submit(self, job: _Job) -> None:
        if job.timeout is not None:
            self._watching = True
        if self._memory_limit is not None and job.chunksize > 1:
            job.track = True  # a worker killed for its memory: which item was it?
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
        assert self.broken is not None
        error = BrokenPoolError(*self.broken.args)
        error.__cause__ = self.broken.__cause__
        return error

    def wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with self._wake_lock:
                if self._wake_w >= 0:
                    try:
                        os.write(self._wake_w, b"\0")
                    except OSError:
                        pass  # full: it wakes up anyway

    def close(self) -> None:
        with self._cond:
            self._accepting = False
            self._closing = True
            self._cond.notify_all()
        self.wake()

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

    def _feed(self) -> None:
        try:
            while True:
                with self._cond:
                    while True:
                        if self._terminating or self.broken is not None:
                            return
                        if (
                            self._jobs
                            and len(self._ready) < self._ready_high
                            and (self._fed_bytes - self._sent_bytes < 64 << 20)
                        ):
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
                self._fed_bytes += len(task.body)
                self._ready.append(task)
                self.wake()

    def _pickle_task(self, job: _Job, index: int, payload: Any) -> _Task | None:
        serializer = job.serializer
        assert serializer is not None
        try:
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
        task = _Task(job, index, body, entry)
        if job.kind == _MAP or job.kind == _STARMAP:
            task.size = len(payload)
        if job.timeout is not None or self._memory_limit is not None:
            task.shown = _show(job.kind, payload)
        return task

    # -- the coordinator thread -----------------------------------------------

    def _run(self) -> None:
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
                for sentinel, w in list(self._workers.items()):
                    if w.out and w.tasks.fileno() in ready:
                        self._write_more(w)
                    if not w.gone and w.results.fileno() in ready:
                        self._receive(w)
                    if sentinel in ready:
                        exited.append(w)
                for w in exited:
                    self._on_exit(w)
                exited = ready = None  # type: ignore[assignment]
                self._maintain()
        except BaseException as e:  # noqa: BLE001 - never leave callers waiting
            self._internal_error(e)
        finally:
            self._shutdown()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # Cleared after reading: a wake() between the two wrote nothing, and
        # what it announced is handled by the loop that follows.
        self._wake_pending = False

    def _room(self, w: _Worker, task: _Task, filling: bool) -> bool:
        """Whether ``w`` may be sent ``task`` now (``filling``: a worker is starting)."""
        if not w.ready or w.closed_in or w.gone:
            return False
        if not w.outstanding:
            return True  # it is waiting for a task, reading its pipe
        # A busy worker only gets what fits in the pipe's buffer (so that the
        # write cannot block), and only if its tasks are short (else tasks
        # would queue behind long ones), and only if no worker is starting:
        # one that is will soon take the task (a call that waits for another
        # must not wait behind it on a busy worker while a worker comes up).
        if filling or len(w.outstanding) >= w.depth:
            return False
        size = len(task.body) + _TASK_HEADER.size + 12
        if task.entry.key not in w.functions:
            size += len(task.entry.data)
        return w.unread + size <= _PIPELINE_BUDGET

    def _dispatch(self) -> None:
        ready = self._ready
        workers = list(self._workers.values())
        filling = len(workers) < self._processes or not all(w.ready for w in workers)
        batches: dict[_Worker, tuple[list[Any], list[int]]] = {}
        while ready:
            task = ready[0]
            if task.job.cancelled:
                # Its result is settled: the task never runs.
                ready.popleft()
                self._functions.release(task.entry)
                self._sent_bytes += len(task.body)  # out of the feeder's budget
                continue
            best = None
            for w in workers:
                if self._room(w, task, filling) and (
                    best is None or len(w.outstanding) < len(best.outstanding)
                ):
                    best = w
                    if not w.outstanding:
                        break
            if best is None:
                break
            ready.popleft()
            batch = batches.get(best)
            if batch is None:
                batch = batches[best] = ([], [0])
            self._send(best, task, batch[0])
            batch[1][0] += 1
        for w, (parts, count) in batches.items():
            self._flush(w, parts, count[0])
        if len(ready) <= self._ready_high // 2 and not self._feeder_done:
            # Under the lock: the feeder sets the flag and waits atomically.
            with self._cond:
                if self._feeder_waiting:
                    self._cond.notify()

    def _send(self, w: _Worker, task: _Task, batch: list[Any]) -> None:
        """Account ``task`` to ``w`` and add its frame to ``batch`` (see _flush)."""
        job = task.job
        entry = task.entry
        fbytes = b""
        if entry.key not in w.functions:
            fbytes = entry.data
            if len(w.functions) >= _FUNCTION_CACHE_SIZE:
                w.functions.popitem(last=False)
            w.functions[entry.key] = None
        code = _SERIALIZER_CODES.get(job.serializer.name, _DEFAULT_SERIALIZER_CODE)  # type: ignore[union-attr]
        kind = job.kind
        if job.track:
            kind |= _TRACKED if job.timeout is None else _TIMED
        if job.catch_all:
            kind |= _CATCH_ALL
        subset = b""
        if task.redo is not None:
            kind |= _SUBSET
            offsets = task.redo.offsets
            subset = struct.pack(f"!I{len(offsets)}I", len(offsets), *offsets)
        header = _TASK_HEADER.pack(entry.key, kind, code, len(fbytes))
        size = _frame_parts(batch, (header, fbytes, subset, task.body))
        if not w.outstanding:
            w.busy_since = time.monotonic()
        w.outstanding.append((task, size))
        w.unread += size
        w.assigned += 1
        self._sent_bytes += len(task.body)
        if self._maxtasks is not None and w.assigned >= self._maxtasks:
            w.closed_in = True  # it exits by itself after this task

    def _flush(self, w: _Worker, batch: list[Any], count: int) -> None:
        """Write the frames of ``w``'s last ``count`` tasks, in one write when small."""
        try:
            self._write(w, batch)
        except OSError:
            # The worker is gone (EPIPE); its sentinel will tell.  The tasks
            # never reached it: give them to other workers, in order.
            w.closed_in = True
            w.functions.clear()
            for _ in range(count):
                task, size = w.outstanding.pop()
                w.unread -= size
                w.assigned -= 1
                self._sent_bytes -= len(task.body)
                self._ready.appendleft(task)

    def _write(self, w: _Worker, parts: list[Any]) -> None:
        """Write ``parts`` to ``w``'s task pipe: what it takes now, the rest later.

        Never blocks: a worker that stops reading (killed in the middle of a
        large task, while this process holds the pipe's read end, so no EPIPE
        comes) must not stop the coordinator, which learns of the death from
        the worker's sentinel.  What the pipe does not take waits in ``w.out``
        and goes as the pipe drains (POLLOUT, see _write_more).  Raises
        OSError if nothing could be written (the pipe is broken).
        """
        if w.out:
            w.out.extend(memoryview(p).cast("B") for p in parts if len(p))
            return
        w.out = _write_some(w.tasks.fileno(), parts)
        if w.out:
            self._poller.register(w.tasks.fileno(), select.POLLOUT)

    def _write_more(self, w: _Worker) -> None:
        """``w``'s task pipe has room: write more of what waits in ``w.out``."""
        try:
            _writev_some(w.tasks.fileno(), w.out)
        except OSError:
            # Broken: the worker is gone and its sentinel will tell (its
            # tasks are accounted for then, see _on_exit and _was_read).
            w.closed_in = True
            w.out.clear()
        if not w.out:
            self._poller.unregister(w.tasks.fileno())

    def _receive(self, w: _Worker) -> None:
        """Read what ``w`` sent (its pipe is readable): control messages and results."""
        reader = w.reader
        try:
            alive = reader.fill()
            while True:
                data = reader.pop()
                if data is None:
                    break
                self._on_message(w, data)
            data = None
        except (EOFError, OSError):
            alive = False
        if not alive:
            # Exited or exiting: its sentinel will fire (else see _end_unreachable).
            w.gone = True
            w.gone_at = time.monotonic()
            self._poller.unregister(w.results.fileno())

    def _end_unreachable(self) -> int | None:
        """Kill workers whose result pipe closed long ago; return the poll timeout (ms).

        A worker's result pipe closes when it exits, and its sentinel fires
        with it.  One that closed the pipe itself (or every descriptor: a bug
        in the task, or a library that closes "inherited" fds) runs on, out of
        reach: under forkserver its sentinel never fires.  After a grace, the
        pool kills it; its task then fails, the others go on.
        """
        timeout = None
        now = time.monotonic()
        for w in self._workers.values():
            if not w.gone or w.killed_why is not None:
                continue
            left = w.gone_at + _UNREACHABLE_GRACE - now
            if left > 0:
                ms = int(left * 1000) + 1
                timeout = ms if timeout is None else min(timeout, ms)
                continue
            w.killed_why = (
                f"its result pipe closed, yet it was still running {_UNREACHABLE_GRACE:g} s later"
            )
            util.debug("pool worker %s closed its result pipe but runs on: killing it", w.pid)
            with contextlib.suppress(OSError, ValueError):
                w.process.kill()
        return timeout

    def _on_message(self, w: _Worker, data: bytes) -> None:
        if data == _MSG_STARTED:
            w.started = True
            return
        if data == _MSG_READY:
            w.ready = True
            self._startup_deaths = 0
            return
        try:
            ok, value = reduction.loads(data)
        except Exception as e:  # noqa: BLE001 - the task's error
            if not w.ready:
                self._break_initializer(w, e)
                return
            if not w.outstanding:
                util.sub_warning("pool worker %s sent an unreadable message: %r", w.pid, e)
                return
            error = ResultUnpicklingError(e)
            error.__cause__ = e
            ok, value = False, error
        if ok is None:
            self._break_initializer(w, value)
            return
        task, size = w.outstanding.popleft()
        w.unread -= size
        self._functions.release(task.entry)
        now = time.monotonic()
        # Let a worker hold several tasks only while its tasks are short.
        elapsed = now - w.busy_since
        w.depth = 32 if elapsed < 0.0002 else 8 if elapsed < 0.001 else 2 if elapsed < 0.01 else 1
        w.busy_since = now
        job = task.job
        if not job.track and job.chunksize > 1 and elapsed > _TRACK_SLOW_ITEMS * job.chunksize:
            # More slow tasks than workers: not just each worker's first task
            # of the call (which loads the function, and maybe its module).
            job.slow += 1
            job.track = job.slow > self._processes
        if self._soft_memory_limit is not None:
            self._check_soft_limit(w)
        if not ok:
            name_item(value, job, task.index, offsets=task.redo and task.redo.offsets)
        if task.redo is None:
            job.result._set(task.index, (ok, value))
        else:
            self._redo_done(task, ok, value)

    def _on_exit(self, w: _Worker) -> None:
        """``w`` has exited: account for its tasks and forget it."""
        # Results it sent before it exited.  (Only while readable: a forked
        # process may still hold the pipe's write end, so EOF may not come.)
        while not w.gone and connection.wait([w.results.fileno()], 0):
            self._receive(w)
        process = w.process
        process.join(_TERMINATE_GRACE)
        if process.exitcode is None:
            # Its sentinel closed, yet it runs on (it closed that pipe end
            # itself?): it can no longer be watched, so it must not stay.
            util.debug("pool worker %s closed its sentinel but runs on: killing it", w.pid)
            w.killed_why = (
                f"its sentinel pipe closed, yet it was still running {_TERMINATE_GRACE:g} s later"
            )
            process.kill()
            process.join(_TERMINATE_GRACE)
        exitcode = process.exitcode
        was_read = bool(w.outstanding) and self._was_read(w)
        # Which task it had started last, and which item of it (see _record).
        seq, item, _started = self._records.read(w.slot)
        running = seq == w.first_seq()
        fault = w.fault
        if fault is not None and (
            not running
            or (fault[0] == "timeout" and w.outstanding and w.outstanding[0][0] is not fault[1])
        ):
            # Killed by the pool (an item's timeout, its memory) after it had
            # finished the task in question, before it started the next one or
            # just as it did: that one is not at fault, and runs again elsewhere.
            was_read = False
        self._forget_worker(w)
        util.debug("pool worker %s exited with %s", w.pid, exitcode)
        outstanding = w.outstanding
        victim = None
        if outstanding and w.ready and not self._terminating and was_read:
            victim, _size = outstanding.popleft()
        # The others never started: they go to other workers, in order.
        for task, _size in reversed(outstanding):
            self._sent_bytes -= len(task.body)
            self._ready.appendleft(task)
        outstanding.clear()
        if victim is not None:
            self._task_died(w, victim, item if running else -1, exitcode)
        if (
            not w.ready
            and self.broken is None
            and not self._terminating
            and not self._stopping_workers
        ):
            self._startup_deaths += 1
            self._last_pid, self._last_exitcode = w.pid, exitcode
            # A worker that re-ran an unguarded main module: so will all others.
            if (
                self._startup_deaths >= _MAX_STARTUP_DEATHS
                or exitcode == spawn.NOT_BOOTSTRAPPED_EXITCODE
            ):
                self._break_startup(w.started)

    def _was_read(self, w: _Worker) -> bool:
        """Whether the dead worker ``w`` had read (so maybe started) its first task.

        If every byte of its outstanding frames that was written is still in
        its pipe, it had not: then no task is failed, all go to other workers.
        Otherwise it had read at least part of the first one (it may have
        died reading a large one): that task fails.
        """
        if w.task_r is None:
            return True
        written = sum(size for _task, size in w.outstanding) - sum(v.nbytes for v in w.out)
        fd = w.task_r.fileno()
        left = 0
        try:
            os.set_blocking(fd, False)  # the only reader is dead
            while True:
                chunk = os.read(fd, _READ_SIZE)
                if not chunk:
                    break
                left += len(chunk)
        except (BlockingIOError, OSError):
            pass
        return left < written

    # -- task control: timeouts, memory limits, faults inside chunks -------------

    def _watch(self, timeout: int | None) -> int | None:
        """Kill workers whose item ran past its timeout, or that went above
        ``memory_limit``; return the poll timeout (ms) that wakes for the next check.

        An item's start is in the worker's record; a timed task whose start
        is not visible yet cannot end before ``now + its timeout``, which is
        when the loop looks again.
        """
        now_ns = time.monotonic_ns()
        wake_ns: int | None = None
        check_memory = False
        if self._memory_limit is not None:
            now = time.monotonic()
            check_memory = now >= self._next_memory_check
            if check_memory:
                self._next_memory_check = now + _MEMORY_POLL
        busy = False
        for w in self._workers.values():
            outstanding = w.outstanding
            if not outstanding or w.fault is not None or w.killed_why is not None:
                continue
            busy = True
            if check_memory and w.pid is not None:
                size = self._rss(w.pid)  # type: ignore[misc]
                if size is not None and size > self._memory_limit:  # type: ignore[operator]
                    self._kill_for(w, ("memory", self._memory_limit, size))
                    continue
            seq, item, started = self._records.read(w.slot)
            running = seq - w.first_seq()
            for position, (task, _size) in enumerate(outstanding):
                limit = task.job.timeout
                if limit is None:
                    continue
                limit_ns = int(limit * 1e9)
                if position == running and started:
                    deadline = started + limit_ns
                    if deadline <= now_ns:
                        self._kill_for(w, ("timeout", task, item, limit))
                        break
                else:
                    deadline = now_ns + limit_ns
                if wake_ns is None or deadline < wake_ns:
                    wake_ns = deadline
        if wake_ns is not None:
            ms = (wake_ns - now_ns) // 1_000_000 + 1
            timeout = ms if timeout is None else min(timeout, ms)
        if busy and self._memory_limit is not None:
            ms = int((self._next_memory_check - time.monotonic()) * 1000) + 1
            timeout = ms if timeout is None else min(timeout, max(ms, 1))
        return timeout

    def _kill_for(self, w: _Worker, fault: tuple[Any, ...]) -> None:
        """Kill ``w`` for what it runs (its sentinel then fails the item: see _task_died)."""
        w.fault = fault
        util.debug("pool worker %s killed: %s", w.pid, fault[0])
        with contextlib.suppress(OSError, ValueError):
            w.process.kill()

    def _check_soft_limit(self, w: _Worker) -> None:
        """``w`` finished a task: above ``max_memory_per_child``, it takes no other."""
        w.depth = 1  # one task at a time, so that it is checked between any two
        if w.closed_in or w.pid is None:
            return
        size = self._rss(w.pid)  # type: ignore[misc]
        if size is None or size <= self._soft_memory_limit:  # type: ignore[operator]
            return
        util.debug("pool worker %s uses %s, above max_memory_per_child: replacing it", w.pid, size)
        w.closed_in = True  # it exits after the tasks it holds (a stop frame follows them)
        stop: list[Any] = []
        _frame_parts(stop, ())
        with contextlib.suppress(OSError):
            self._write(w, stop)

    def _task_died(self, w: _Worker, task: _Task, item: int, exitcode: int | None) -> None:
        """``w`` died running ``task`` (item ``item`` of it; -1: unknown): fail it.

        In a chunk, only the item it was running fails (``_isolate``).
        """
        job = task.job
        fault = w.fault
        if fault is not None and fault[0] == "timeout" and fault[1] is task:
            item = fault[2]  # the item that ran past its deadline
        if job.kind == _MAP or job.kind == _STARMAP:
            self._isolate(w, task, item, exitcode)
            return
        self._functions.release(task.entry)
        self._deliver(task, (False, self._death_error(w, task, 0, exitcode)))

    def _isolate(self, w: _Worker, task: _Task, k: int, exitcode: int | None) -> None:
        """The worker ``w`` died running item ``k`` of the chunk ``task`` (-1: unknown).

        Item ``k`` fails alone, and the chunk's other items run again in a
        new task: their results died with the worker, so the items before
        ``k`` run a second time, those after it a first time.  If ``k`` is
        unknown (the task was not tracked, see ``_Job.track``), each item runs
        again as a task of its own: the one that kills its worker again is
        then known, and fails alone (it ran twice, as may those before it).
        """
        job = task.job
        redo = task.redo
        count = len(redo.offsets) if redo is not None else task.size
        if k < 0 and count == 1:
            k = 0
        k = min(k, count - 1)
        chunk = redo.chunk if redo is not None else _ChunkResults(task.size, _MISSING)
        offsets = redo.offsets if redo is not None else list(range(count))
        if k >= 0:
            chunk.values[offsets[k]] = _ItemFailed(self._death_error(w, task, k, exitcode))
            chunk.left -= 1
            rest = [i for i in range(count) if i != k]
            groups = [rest] if rest else []
        else:
            groups = [[i] for i in range(count)]
        if not groups:
            self._functions.release(task.entry)
            self._chunk_done(job, task.index, chunk)
            return
        for n, group in enumerate(reversed(groups)):
            if n:
                self._functions.retain(task.entry)  # the first takes the dead task's
            # The chunk's own bytes again, with the offsets of the items to run
            # (see _wire._SUBSET): nothing is unpickled here.
            again = _Task(job, task.index, task.body, task.entry)
            again.redo = _Redo([offsets[i] for i in group], chunk)
            again.size, again.shown = task.size, task.shown
            self._sent_bytes -= len(task.body)  # not the feeder's: out of its budget
            self._ready.appendleft(again)

    def _redo_done(self, task: _Task, ok: bool, value: Any) -> None:
        """The result of a re-run of part of a chunk: complete the chunk's results."""
        redo = task.redo
        assert redo is not None
        chunk = redo.chunk
        if chunk.done:
            return
        if not ok:
            # An item raised: as in the standard library, the chunk fails as one.
            chunk.done = True
            task.job.result._set(task.index, (False, value))
            return
        for offset, result in zip(redo.offsets, value):
            chunk.values[offset] = result
        chunk.left -= len(redo.offsets)
        self._chunk_done(task.job, task.index, chunk)

    def _deliver(self, task: _Task, outcome: tuple[bool, Any]) -> None:
        """Fail a whole task (the part of a chunk it re-runs, if one)."""
        redo = task.redo
        if redo is None:
            task.job.result._set(task.index, outcome)
            return
        for offset in redo.offsets:
            redo.chunk.values[offset] = _ItemFailed(outcome[1])
        redo.chunk.left -= len(redo.offsets)
        self._chunk_done(task.job, task.index, redo.chunk)

    @staticmethod
    def _chunk_done(job: _Job, index: int, chunk: _ChunkResults) -> None:
        """Set the results of chunk ``index`` once complete; some of its items failed alone."""
        if chunk.left > 0 or chunk.done:
            return
        chunk.done = True
        values = _PartialChunk(chunk.values)
        set_chunk = getattr(job.result, "_set_chunk", None)
        if set_chunk is not None:
            set_chunk(index, values)
        else:
            # map(): raises the first error, as for any failed chunk.
            job.result._set(index, (False, values.first_error()))

    def _death_error(
        self,
        w: _Worker,
        task: _Task,
        k: int | None,
        exitcode: int | None,
    ) -> BaseException:
        """The error of ``task`` (its item ``k`` in a chunk) whose worker ``w`` died."""
        what = self._describe_item(task, k)
        fault = w.fault
        others = "the pool's other tasks" if task.job.kind == _APPLY else "the call's other items"
        if fault is not None and fault[0] == "timeout":
            limit = fault[3]
            error: BaseException = TaskTimeoutError(
                f"{what} was still running after its task_timeout of "
                f"{limit:g} s: the pool killed its worker (pid {w.pid}) and started a "
                f"replacement; {others} go on"
            )
            error.timeout = limit  # type: ignore[attr-defined]
            error.index = self._index_in_call(task, k)  # type: ignore[attr-defined]
            error.pid = w.pid  # type: ignore[attr-defined]
            return error
        if fault is not None and fault[0] == "memory":
            limit, size = fault[1], fault[2]
            return MemoryLimitError(
                f"{what} made its worker (pid {w.pid}) go above the pool's "
                f"memory_limit of {_format_size(limit)}: its resident memory reached "
                f"{_format_size(size)}. The pool killed it and started a replacement; "
                f"{others} go on. Raise memory_limit, or make the item use less memory.",
                w.pid,
                exitcode,
                limit,
                size,
            )
        error = _worker_death_error(w.pid, exitcode, w.killed_why)
        if k is not None:
            error.args = (f"{error.args[0]} It was running {what}.",)
        return error

    @staticmethod
    def _index_in_call(task: _Task, k: int | None) -> int | None:
        """The index in the whole call of item ``k`` of ``task`` (None: an apply)."""
        job = task.job
        if job.kind == _ONE:
            return task.index
        if job.kind == _MAP or job.kind == _STARMAP:
            offset = k or 0
            if task.redo is not None:
                offset = task.redo.offsets[offset]
            return task.index * job.chunksize + offset
        return None

    def _describe_item(self, task: _Task, k: int | None) -> str:
        """ "item 17 of map(square) ('abc')", for error messages.

        The item's repr is known for calls with a timeout or a memory limit
        (see ``_Task.shown``); the parent never unpickles a task to find it.
        """
        job = task.job
        call = f"{job.api}({_callable_name(job.func)})"
        index = self._index_in_call(task, k)
        shown = task.shown
        if index is None:
            return f"the call {call}" + (f" (arguments ({shown[0]}))" if shown else "")
        if k is None:
            return f"{job.describe(task.index)} (the worker died before it started an item)"
        offset = 0 if job.kind == _ONE else k
        if task.redo is not None and job.kind != _ONE:
            offset = task.redo.offsets[offset]
        if shown is not None and offset < len(shown):
            return f"item {index} of {call} ({shown[offset]})"
        return f"item {index} of {call}"

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

    def _start_worker(self) -> None:
        task_r, task_w = connection.Pipe(duplex=False)
        result_r, result_w = connection.Pipe(duplex=False)
        slot = -1
        try:
            slot = self._records.take()
            process = self._process_factory(
                self._ctx,
                target=worker,
                args=(
                    task_r,
                    result_w,
                    self._initializer,
                    self._initargs,
                    self._maxtasks,
                    self._wrap_exception,
                    *self._records.for_worker(slot),
                ),
            )
            process.name = process.name.replace("Process", "PoolWorker")
            process.daemon = True
            w = _Worker(process, task_w, result_r)
            w.slot = slot
            self.pool.append(process)
            self._starting = w
            try:
                process.start()
            except BaseException:
                self.pool.remove(process)
                raise
            finally:
                self._starting = None
        except BaseException:
            for conn in (task_w, result_r, task_r):
                conn.close()
            self._records.give_back(slot)
            raise
        finally:
            result_w.close()
        w.task_r = task_r
        # The coordinator never blocks on one worker's pipe (see _write and
        # _NonBlockingFrameReader).  Our ends only: the worker's are other
        # open file descriptions, and stay blocking.
        os.set_blocking(task_w.fileno(), False)
        os.set_blocking(result_r.fileno(), False)
        w.pid = getattr(process, "pid", None)
        sentinel = getattr(process, "sentinel", None)
        if sentinel is not None:
            self._workers[sentinel] = w
            self._poller.register(sentinel, select.POLLIN)
            self._poller.register(result_r.fileno(), select.POLLIN)
        else:  # a stand-in Process without a sentinel (tests)
            self._workers[-id(w)] = w
        util.debug("added worker")

    def _forget_worker(self, w: _Worker) -> None:
        """Stop watching ``w`` and close our ends of its pipes (it has exited)."""
        sentinel = getattr(w.process, "sentinel", None)
        if sentinel is not None:
            self._workers.pop(sentinel, None)
            self._poller.unregister(sentinel)
            if not w.gone:
                self._poller.unregister(w.results.fileno())
            if w.out:
                self._poller.unregister(w.tasks.fileno())
        else:
            self._workers.pop(-id(w), None)
        w.out = []
        for conn in (w.tasks, w.results, w.task_r):
            if conn is not None:
                conn.close()
        self._records.give_back(w.slot)
        w.slot = -1
        try:
            self.pool.remove(w.process)
        except ValueError:
            pass

    # -- failures ---------------------------------------------------------------

    def _break_initializer(self, w: _Worker, exc: BaseException) -> None:
        name = _callable_name(self._initializer)
        error = BrokenPoolError(
            f"the pool's initializer {name} raised {type(exc).__name__}: {exc} "
            f"(in worker pid {w.pid}). Every pending and future task of this pool "
            f"fails; fix the initializer (its error is the cause below) and make a new pool."
        )
        error.__cause__ = exc
        self._break(error)

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
        traceback.print_exc()
        error = BrokenPoolError(f"internal error in the pool: {exc!r}")
        error.__cause__ = exc
        try:
            self._break(error)
        except BaseException:  # noqa: BLE001 - last resort
            self._fail_pending(lambda: error)

    def _fail_pending(self, make_error: Callable[[], BaseException]) -> None:
        for result in list(self._cache.values()):
            result._abandon(make_error())

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
                jobs = list(self._jobs)
                self._jobs.clear()
                self._accepting = False
                self._cond.notify_all()
            make_error = (
                self._broken_error
                if self.broken is not None
                else lambda: PoolTerminatedError(
                    "the pool was terminated before this task finished"
                )
            )
            self._fail_pending(make_error)
            for job in jobs:
                job.result._abandon(make_error())
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


def _joined(thread: threading.Thread) -> Callable[[float | None], bool]:
    """``thread.join`` as a wait that tells whether the thread has ended."""

    def join(timeout: float | None) -> bool:
        thread.join(timeout)
        return not thread.is_alive()

    return join


def _show(kind: int, payload: Any) -> tuple[str, ...]:
    """Short reprs of a task's items (an apply: of its arguments), made as it is pickled."""
    if kind == _APPLY:
        args, kwds = payload
        return (
            ", ".join(
                [_REPR.repr(a) for a in args] + [f"{n}={_REPR.repr(v)}" for n, v in kwds.items()]
            ),
        )
    if kind == _ONE:
        return (_REPR.repr(payload),)
    return tuple(_REPR.repr(item) for item in payload)
