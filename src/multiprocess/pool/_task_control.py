"""Task control in a process pool: timeouts, memory limits, faults inside chunks (layer 5).

A part of ``_Coordinator`` (``_coordinator``), which inherits ``_TaskControl``;
all of it runs on the coordinator thread.  It reads each worker's record in
shared memory (``_record``): the number of the task it started last, the item
of the chunk it runs and, for a task with a ``task_timeout``, since when.  A
worker that dies (or that the pool kills: an item past its timeout, a worker
above ``memory_limit``) while running item k of a chunk fails item k alone:
the chunk's other items run again in a new task (``_isolate``), so items
before k may run twice.  The poll wakes for the nearest item deadline
(``_watch``), and every ``_MEMORY_POLL`` seconds while a ``memory_limit`` is
set and a worker is busy.  A worker above ``max_memory_per_child`` takes no
new task once it finishes one (``_check_soft_limit``).
"""

from __future__ import annotations

import collections
import contextlib
import reprlib
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._limits import RssReader

from .. import util
from .._errors import TaskTimeoutError
from ._dispatch import _Worker
from ._exceptions import MemoryLimitError, _callable_name, _worker_death_error
from ._functions import _PickledFunctions
from ._jobs import _isolate, _Task
from ._limits import _format_size
from ._record import _Records
from ._wire import _APPLY, _MAP, _ONE, _STARMAP, _frame_parts

# How often the resident memory of busy workers is read while a memory_limit
# is set (seconds): a worker may go that long above the limit before it is killed.
_MEMORY_POLL = 0.1
# Short reprs of items for error messages.
_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


class _TaskControl:
    """The coordinator's watch over running tasks, and what a dead worker's task becomes."""

    # What this part uses of the coordinator's state (set in _Coordinator.__init__)
    # and of its other parts' methods: annotations only, for the type checker,
    # which holds them to the real definitions.
    _workers: dict[int, _Worker]
    _records: _Records
    _memory_limit: int | None
    _soft_memory_limit: int | None
    _rss: RssReader | None
    _next_memory_check: float
    _functions: _PickledFunctions
    _ready: collections.deque[_Task]
    _sent_bytes: int
    _write: Callable[[_Worker, list[Any]], None]

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
        See ``_jobs._isolate``.
        """
        job = task.job
        redos = _isolate(
            job,
            task.index,
            task.redo,
            task.size,
            k,
            lambda k: self._death_error(w, task, k, exitcode),
        )
        if not redos:
            self._functions.release(task.entry)
            return
        for n, redo in enumerate(reversed(redos)):
            if n:
                self._functions.retain(task.entry)  # the first takes the dead task's
            # The chunk's own bytes again, with the offsets of the items to run
            # (see _wire._SUBSET): nothing is unpickled here.
            again = _Task(job, task.index, task.body, task.entry, task.oob)
            again.redo = redo
            again.size, again.shown = task.size, task.shown
            self._sent_bytes -= task.nbytes  # not the feeder's: out of its budget
            self._ready.appendleft(again)

    def _redo_done(self, task: _Task, ok: bool, value: Any) -> None:
        """The result of a re-run of part of a chunk: complete the chunk's results."""
        assert task.redo is not None
        task.redo.done(task.job, task.index, ok, value)

    def _deliver(self, task: _Task, outcome: tuple[bool, Any]) -> None:
        """Fail a whole task (the part of a chunk it re-runs, if one)."""
        if task.redo is None:
            task.job.result._set(task.index, outcome)
        else:
            task.redo.failed(task.job, task.index, outcome[1])

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
            return job.position(task.index, offset)
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
