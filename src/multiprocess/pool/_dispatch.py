"""A process pool's workers as its coordinator sees them: ``_Worker`` and ``_Dispatch`` (layer 5).

A part of ``_Coordinator`` (``_coordinator``), which inherits ``_Dispatch``;
all of it runs on the coordinator thread.  It starts workers and forgets
those that exited, gives them tasks, reads what they send back and accounts
for the tasks of a worker that exits.  It never blocks on one worker: the
coordinator's ends of the pipes are non-blocking, a task frame that the pipe
does not take at once is written as the worker reads it (POLLOUT in the
coordinator's poll, see ``_write``), and a long result is read as it arrives
(``_receive``).  So a worker killed half-way through reading a large argument
or writing a large result is seen by its sentinel like any other death.

A worker is sent a second task before finishing the first only when its
recent tasks were short and the frames fit in the pipe's buffer, so that long
tasks are never queued behind each other (``_room``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import struct
import threading
import time
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import connection, reduction, spawn, util
from ._exceptions import BrokenPoolError, ResultUnpicklingError
from ._functions import _PickledFunctions
from ._jobs import _Task
from ._notes import name_item
from ._oob import RESULT_MARK, Channel, decode, encode, side_channel, unpack
from ._record import _Records
from ._wire import (
    _CATCH_ALL,
    _DEFAULT_SERIALIZER_CODE,
    _FUNCTION_CACHE_SIZE,
    _MSG_READY,
    _MSG_STARTED,
    _OOB,
    _READ_SIZE,
    _SERIALIZER_CODES,
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
# How long terminate() lets workers handle SIGTERM before it sends SIGKILL,
# and a worker whose sentinel closed gets to exit (_coordinator imports it:
# a test that changes it must change it in both modules).
_TERMINATE_GRACE = 1.0
# How long a worker may run on once its result pipe has closed (it normally
# exits at that very moment) before the pool kills it: see _end_unreachable.
_UNREACHABLE_GRACE = 5.0
# Items slower than this (seconds, on average over a task) get tracked in the
# record (see _Job.track): the store it costs per item is then negligible
# (without it, a worker's death inside a chunk costs a re-run of each item).
_TRACK_SLOW_ITEMS = 50e-6


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
        "side",
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
        # whether the worker had read its task (see _Dispatch._on_exit).
        self.task_r: Any = None
        self.results = results  # parent's read end of the result pipe (non-blocking)
        self.reader = _NonBlockingFrameReader(results.fileno())
        # Our end of its side channel for memfds (see _oob), or None.
        self.side: Channel | None = None
        # Bytes of task frames that the task pipe (non-blocking) did not take
        # yet, oldest first: written when it has room (_Dispatch._write_more).
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
        self.depth = 1  # how many tasks it may hold (see _Dispatch._room)
        self.closed_in = False  # no more tasks will be sent
        self.gone = False  # its result pipe reached EOF
        self.gone_at = 0.0  # when (time.monotonic())
        self.killed_why: str | None = None  # the pool killed it, unreachable: why
        self.slot = -1  # its slot in the pool's record (see _record)
        # The pool killed it for a task: ("timeout", task, item, seconds) or
        # ("memory", limit, size) (see _TaskControl._watch).
        self.fault: tuple[Any, ...] | None = None

    def first_seq(self) -> int:
        """The number of ``outstanding[0]`` among the tasks sent to it (the record's SEQ)."""
        return self.assigned - len(self.outstanding) + 1


class _Dispatch:
    """The coordinator's traffic with its workers: start, send tasks, read results, exits."""

    # What this part uses of the coordinator's state (set in _Coordinator.__init__)
    # and of its other parts' methods: annotations only, for the type checker,
    # which holds them to the real definitions.
    pool: list[Any]
    _workers: dict[int, _Worker]
    _starting: _Worker | None
    _ctx: Any
    _process_factory: Callable[..., Any]
    _processes: int
    _initializer: Callable[..., Any] | None
    _initargs: Iterable[Any]
    _maxtasks: int | None
    _wrap_exception: bool
    _cond: threading.Condition
    _ready: collections.deque[_Task]
    _ready_high: int
    _sent_bytes: int
    _feeder_waiting: bool
    _feeder_done: bool
    _functions: _PickledFunctions
    _oob: bool
    _in_round: bool
    _done_entries: list[Any]
    _terminating: bool
    _stopping_workers: bool
    broken: BrokenPoolError | None
    _startup_deaths: int
    _last_pid: int | None
    _last_exitcode: int | None
    _poller: select.poll
    _records: _Records
    _soft_memory_limit: int | None
    _memory_limit: int | None
    _break_initializer: Callable[[_Worker, BaseException], None]
    _break_startup: Callable[[bool], None]
    _check_soft_limit: Callable[[_Worker], None]  # _TaskControl
    _redo_done: Callable[[_Task, bool, Any], None]  # _TaskControl
    _task_died: Callable[[_Worker, _Task, int, int | None], None]  # _TaskControl

    # -- starting and forgetting workers -------------------------------------

    def _start_worker(self) -> None:
        task_r, task_w = connection.Pipe(duplex=False)
        result_r, result_w = connection.Pipe(duplex=False)
        side, side_theirs = side_channel() if self._oob else (None, None)
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
                    side_theirs,
                    self._memory_limit,
                ),
            )
            process.name = process.name.replace("Process", "PoolWorker")
            process.daemon = True
            w = _Worker(process, task_w, result_r)
            w.slot = slot
            w.side = Channel(side) if side is not None else None
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
            for conn in (task_w, result_r, task_r, side):
                if conn is not None:
                    conn.close()
            self._records.give_back(slot)
            raise
        finally:
            result_w.close()
            if side_theirs is not None:
                side_theirs.close()
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
        for conn in (w.tasks, w.results, w.task_r, w.side):
            if conn is not None:
                conn.close()
        self._records.give_back(w.slot)
        w.slot = -1
        try:
            self.pool.remove(w.process)
        except ValueError:
            pass

    # -- giving tasks to workers ----------------------------------------------

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
        size = task.nbytes + _TASK_HEADER.size + 12
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
                self._sent_bytes += task.nbytes  # out of the feeder's budget
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
        fpacked = None
        if entry.key not in w.functions:
            fbytes = entry.data
            fpacked = entry.packed
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
        oob: list[Any] = []
        if fpacked is not None or task.oob is not None:
            # Large data (see _oob): its memfds go on the side channel now,
            # the frame says which (or carries the bytes if they cannot).
            kind |= _OOB
            oob = encode(w.side, fpacked, task.oob, gift=True)
        header = _TASK_HEADER.pack(entry.key, kind, code, len(fbytes))
        size = _frame_parts(batch, (header, fbytes, subset, *oob, task.body))
        if not w.outstanding:
            w.busy_since = time.monotonic()
        w.outstanding.append((task, size))
        w.unread += size
        w.assigned += 1
        self._sent_bytes += task.nbytes
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
                self._sent_bytes -= task.nbytes
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

    # -- hearing from workers: results, exits ---------------------------------

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
            if data[:1] == RESULT_MARK:  # with segments (see _oob)
                # A result's memfds are made for it alone and closed by the
                # worker: kept as spares for the next tasks (see _oob.decode).
                _func, segments, _end = decode(memoryview(data), 1, w.side, False, recycle=True)
                ok, value = unpack(segments)
                del segments
            else:
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
        if self._in_round:
            # At the end of the round: the calls its results make (the
            # executor's next ones, see call_soon) still find the pickle.
            self._done_entries.append(task.entry)
        else:
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
            offsets = None if task.redo is None else task.redo.offsets
            name_item(value, job, task.index, offsets=offsets)
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
        if w.fault is None and self._memory_limit is not None:
            peak = self._records.peak(w.slot)
            if peak:  # it killed itself, after an item that went above the limit
                w.fault = ("memory", self._memory_limit, peak)
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
            self._sent_bytes -= task.nbytes
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
