"""Pools of workers: ``Pool`` (processes) and ``ThreadPool`` (threads) (layer 5).

The API is the standard library's; what differs is underneath.  A process
``Pool`` is run by one coordinator object, :class:`_Coordinator`, that owns the
worker processes and knows which worker holds which task::

  caller threads      feeder thread (_feed)         coordinator thread (_run)       worker processes
  --------------      ---------------------         -------------------------       ----------------
  map(), imap(),  _Job  draw tasks lazily; pickle   give each task to a worker  frame  worker(): read
  apply_async() -----> the function once per call ---> with room; poll result ------> a task, call it,
       |               and the arguments per task  ready  pipes, sentinels and  <------ send the result
       |                                           tasks  a wake-up pipe        result  (one pipe each way
       v                                                  together                       per worker)
  AsyncResult.get() <---------- result._set(index, (ok, value)) ---+
                                                                   |
       a sentinel fires: fail the task the dead worker had read (TerminatedWorkerError with its
       pid and exit code or signal), hand its other tasks to other workers, start a replacement

The coordinator waits with one persistent ``select.poll`` object (what
``connection.wait`` does, without rebuilding it on every message).  It never
blocks on one worker: its ends of the pipes are non-blocking, a task frame
that the pipe does not take at once is written as the worker reads it (POLLOUT
in the same poll), and a long result is read as it arrives.  So a worker
killed half-way through reading a large argument or writing a large result is
seen by its sentinel like any other death.

Faults never hang the caller.  A worker that dies fails exactly the task it was
running; results that cannot be pickled in the worker (:class:`MaybeEncodingError`)
or unpickled in the parent (:class:`ResultUnpicklingError`) fail their task; an
initializer that raises, or workers that keep dying while they start, break the
pool (:class:`BrokenPoolError` for every pending and future task) instead of
respawning forever; ``terminate()`` kills the workers (SIGTERM, then SIGKILL)
and fails whatever was pending (:class:`PoolTerminatedError`).

Serialization goes through :mod:`multiprocess.reduction` with the context's
serializer, looked up at each call.  The function of a call is pickled once
per call (or not at all, see ``_PickledFunctions``) and sent once to each
worker that runs one of its tasks; workers keep the last few functions by key.

Wire format, parent to worker: one frame per task (``Connection`` framing), a
``_TASK_HEADER`` (function key, kind, serializer, length of the function
bytes) then the function bytes (absent when the worker already has them) then
the pickled arguments; an empty frame asks the worker to exit.  Worker to
parent: ``b"S"`` (started), ``b"R"`` (initializer done, ready for tasks), then
one pickled ``(ok, value)`` per task in the order the tasks were sent, or
``(None, exc)`` if the initializer raised.  Results come back in order, which
is how the coordinator knows which task a worker was running when it died;
and since it keeps the worker's end of the task pipe, it can tell whether the
dead worker had read that task at all (if not, another worker gets it).

A worker is sent a second task before finishing the first only when its recent
tasks were short and the frames fit in the pipe's buffer, so that long tasks
are never queued behind each other.

``ThreadPool`` has the same API on threads (:class:`_ThreadCoordinator`): the
worker threads draw tasks themselves and nothing is pickled.

Compatibility: ``_pool`` (the live worker Process objects), ``_state``,
``_cache``, ``_ctx``, ``_processes`` and ``_repopulate_pool()`` keep the meaning
they have in the standard library; real clients and its test suite use them.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import itertools
import operator
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import BrokenExecutor
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: typing_extensions is not a dependency
    from typing_extensions import Self


from . import connection, reduction, spawn, util
from . import context as _context
from ._errors import ProcessError, TimeoutError
from ._posix import advance, first_bytes

__all__ = ["Pool", "ThreadPool"]

#
# States of a pool
#

INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"

# Kinds of task.  The function of an _APPLY task travels with its arguments;
# the others share the function of their call.
_APPLY = 0  # payload: (args, kwds)
_ONE = 1  # payload: one item; func(item)  (imap and imap_unordered, chunksize 1)
_MAP = 2  # payload: a chunk of items; [func(x) for x in chunk]
_STARMAP = 3  # payload: a chunk of argument tuples; [func(*a) for a in chunk]

# call id, kind, serializer code, length of the function bytes that follow (0: none)
_TASK_HEADER = struct.Struct("!QBBI")
_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")

_SERIALIZER_CODES = {"dill": 0, "pickle": 1, "cloudpickle": 2}
_SERIALIZER_NAMES = {code: name for name, code in _SERIALIZER_CODES.items()}
_DEFAULT_SERIALIZER_CODE = 255  # whatever the worker's environment says

_MSG_STARTED = b"S"
_MSG_READY = b"R"

# How many call functions a worker keeps; the coordinator mirrors the cache.
_FUNCTION_CACHE_SIZE = 16
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


def mapstar(args: tuple[Callable[..., Any], Iterable[Any]]) -> list[Any]:
    """``list(map(func, iterable))`` for ``args == (func, iterable)``."""
    return list(map(*args))


def starmapstar(args: tuple[Callable[..., Any], Iterable[Any]]) -> list[Any]:
    """``list(itertools.starmap(func, iterable))`` for ``args == (func, iterable)``."""
    return list(itertools.starmap(args[0], args[1]))


#
# Exceptions
#


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker.

    Attached as ``__cause__`` of the exception the caller gets, so that the
    worker's traceback is printed with it.
    """

    def __init__(self, tb: str) -> None:
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class ExceptionWithTraceback:
    """An exception and its formatted traceback, pickled together (worker side)."""

    def __init__(self, exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        self.exc = exc
        self.tb = f'\n"""\n{text}"""'

    def __reduce__(self) -> Any:
        return rebuild_exc, (self.exc, self.tb)


def rebuild_exc(exc: BaseException, tb: str) -> BaseException:
    """Unpickle an ``ExceptionWithTraceback``: the exception, caused by its traceback."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class MaybeEncodingError(Exception):
    """A task's result (or exception) could not be pickled in the worker.

    ``exc`` and ``value`` hold the reprs of the pickling error and of the value.
    """

    def __init__(self, exc: Any, value: Any) -> None:
        self.exc = _safe_repr(exc)
        self.value = _safe_repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self) -> str:
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}: {self}>"


class ResultUnpicklingError(MaybeEncodingError):
    """A task's result arrived from the worker but could not be unpickled here.

    The error raised while unpickling is the ``__cause__``.
    """

    def __init__(self, exc: Any, value: Any = "<not unpickled>") -> None:
        super().__init__(exc, value)

    def __str__(self) -> str:
        return (
            "Error receiving result: the worker sent it, but unpickling it in the "
            f"parent failed. Reason: '{self.exc}'"
        )


class TerminatedWorkerError(ProcessError, RuntimeError):
    """The worker process running a task died before sending the result.

    Attributes ``pid`` and ``exitcode`` (negative: the signal that killed it)
    name the worker.  The pool has replaced it and goes on.  It is also a
    ``RuntimeError``, which code written for other pools catches.
    """

    def __init__(self, message: str, pid: int | None = None, exitcode: int | None = None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> Any:
        return type(self), (self.args[0], self.pid, self.exitcode)


class BrokenPoolError(ProcessError, BrokenExecutor):
    """The pool cannot run tasks any more.

    Its initializer raised (that exception is the ``__cause__``), or its workers
    kept dying while they started.  Every pending and future task fails with
    this error; create a new pool once the cause is fixed.

    It is also a ``concurrent.futures.process.BrokenProcessPool`` (hence a
    ``BrokenExecutor`` and a ``RuntimeError``), so that ``except`` clauses
    written for ``concurrent.futures`` or loky catch it.
    """

    def __init__(self, *args: Any) -> None:
        _adopt_broken_process_pool()
        super().__init__(*args)


def _adopt_broken_process_pool() -> None:
    """Make ``BrokenPoolError`` a subclass of ``BrokenProcessPool`` once that exists.

    ``concurrent.futures.process`` imports the standard ``multiprocessing``
    package, which this package must not import, so ``BrokenPoolError`` starts
    out under ``BrokenExecutor`` (from ``concurrent.futures``, which does not
    import it) and moves under ``BrokenProcessPool`` as soon as someone else has
    imported that module: whoever writes ``except BrokenProcessPool`` has.  This
    runs at import and each time a ``BrokenPoolError`` is made, i.e. before it
    is raised.  ``except`` and ``isinstance`` follow the class's real ``__mro__``
    (an ABC-style ``register`` would not do for ``except``), which assigning
    ``__bases__`` recomputes.
    """
    module = sys.modules.get("concurrent.futures.process")
    base = getattr(module, "BrokenProcessPool", None)
    if isinstance(base, type) and base not in BrokenPoolError.__mro__:
        BrokenPoolError.__bases__ = (ProcessError, base)


_adopt_broken_process_pool()


class PoolTerminatedError(ProcessError, RuntimeError):
    """``terminate()`` was called (or the pool was garbage collected) before the task finished.

    It is also a ``RuntimeError``, which code written for other pools catches.
    """


#
# Helpers
#


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        return object.__repr__(obj)


def _short_repr(obj: Any, limit: int = 80) -> str:
    text = _safe_repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _callable_name(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else _short_repr(func)


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


def _seconds(timeout: Any) -> str:
    try:
        return f"{timeout:g} s"
    except (TypeError, ValueError):
        return f"{timeout!r} s"


_SIGNAL_HINTS = {
    "SIGKILL": (
        "SIGKILL usually means that the Operating System's out-of-memory killer "
        "stopped the worker (see dmesg or the container's memory limit), or that "
        "someone ran kill -9 on it."
    ),
    "SIGSEGV": "SIGSEGV is a crash in native code (a C extension, ctypes, or a bug).",
    "SIGBUS": "SIGBUS is a crash in native code (a bad memory access).",
    "SIGILL": "SIGILL is a crash in native code (an illegal instruction).",
    "SIGFPE": "SIGFPE is a crash in native code (an arithmetic fault).",
    "SIGABRT": "SIGABRT means native code called abort(), e.g. a failed assertion in a C library.",
    "SIGTERM": "SIGTERM means something asked the worker to stop (a job scheduler, a shutdown).",
}


def _describe_exitcode(exitcode: int | None) -> tuple[str, str]:
    """Return ("exit code -9 (SIGKILL)", a hint on the likely cause)."""
    if exitcode is None:
        return "an unknown exit code", ""
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"exit code {exitcode} ({name})", _SIGNAL_HINTS.get(name, "")
    return f"exit code {exitcode}", (
        "A worker that exits with a status was ended by the code it ran: the "
        "function (or a library it called) used os._exit(), sys.exit() or exit()."
    )


def _worker_death_error(
    pid: int | None, exitcode: int | None, killed_why: str | None = None
) -> TerminatedWorkerError:
    if killed_why is not None:
        message = (
            f"A worker process managed by the pool could no longer be reached while "
            f"running this task: {killed_why} (worker pid {pid}). The pool killed it "
            f"and has started a replacement worker."
        )
        return TerminatedWorkerError(message, pid, exitcode)
    code, hint = _describe_exitcode(exitcode)
    message = (
        f"A worker process managed by the pool was unexpectedly terminated while "
        f"running this task (worker pid {pid}, {code}). This could be caused by a "
        f"segmentation fault while calling the function or by an excessive memory "
        f"usage causing the Operating System to kill the worker."
    )
    if hint:
        message += " " + hint
    message += " The pool has started a replacement worker."
    return TerminatedWorkerError(message, pid, exitcode)


def _pickling_failure(exc: BaseException, what: str) -> BaseException:
    """The error for a task that could not be pickled: says which part and why."""
    if isinstance(exc, (pickle.PicklingError, TypeError)):
        error = reduction.SerializationError(f"{what}: {exc}")
        error.__cause__ = exc
        return error
    # Raised by the object's own __reduce__ (say, a RuntimeError): keep its
    # type, as the standard library does, and say where it came from.
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(what)
    return exc


def _serializer_of(ctx: Any) -> reduction.Serializer:
    """The serializer of ``ctx``, looked up now (None: the package default)."""
    name = getattr(ctx, "_serializer", None)
    if name is not None and not isinstance(name, (str, reduction.Serializer)):
        name = None  # a context that is not ours
    return reduction.get_serializer(name)


def _run_task(func: Callable[..., Any], kind: int, payload: Any) -> Any:
    if kind == _ONE:
        return func(payload)
    if kind == _MAP:
        return list(map(func, payload))
    if kind == _STARMAP:
        return list(itertools.starmap(func, payload))
    args, kwds = payload
    return func(*args, **kwds)


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[tuple]:
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


class _FrameReader:
    """Reads frames in the ``Connection`` wire format from a blocking pipe.

    Small frames that arrive together are taken with one ``read()``; a long
    frame is read straight into a buffer of its size.  Used on both ends of a
    pool's pipes, where messages are many and small.
    """

    __slots__ = ("buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def pop(self) -> Any:
        """The next complete frame already read, or None."""
        buf = self.buf
        n = len(buf)
        if n < 4:
            return None
        (size,) = _LENGTH.unpack_from(buf)
        start = 4
        if size < 0:
            if size != -1:
                raise OSError("bad message length")
            if n < 12:
                return None
            (size,) = _LONG_LENGTH.unpack_from(buf, 4)
            start = 12
        end = start + size
        if end > n:
            if size <= _READ_SIZE:
                return None
            # A long frame: read the rest into a buffer of its size.
            frame = bytearray(size)
            have = n - start
            frame[:have] = buf[start:]
            self.buf = b""
            return self._read_long(frame, have)
        self.buf = buf[end:]
        return buf[start:end]

    def _read_long(self, frame: bytearray, have: int) -> Any:
        """Fill ``frame`` (its first ``have`` bytes are there) and return it."""
        # The peer is writing it now: block until it is complete.
        size = len(frame)
        with memoryview(frame) as view:
            while have < size:
                got = os.readv(self.fd, [view[have : have + (1 << 30)]])
                if not got:
                    raise EOFError("end of file in the middle of a message")
                have += got
        return frame

    def fill(self) -> bool:
        """Read what is there (blocking until something is); False at end of file."""
        chunk = os.read(self.fd, _READ_SIZE)
        if not chunk:
            return False
        self.buf = self.buf + chunk if self.buf else chunk
        return True

    def next(self) -> Any:
        """The next frame, blocking until it is complete (EOFError at end of file)."""
        while True:
            frame = self.pop()
            if frame is not None:
                return frame
            if not self.fill():
                raise EOFError


_READ_SIZE = 65536


class _NonBlockingFrameReader(_FrameReader):
    """A ``_FrameReader`` for a non-blocking pipe, read when it is readable: never waits.

    The coordinator reads each worker's results with one: a long frame is
    filled across calls, so that a worker that dies half-way through writing
    one (while another process may hold a copy of the pipe's write end, so
    that no end of file comes) leaves a partial frame, not a blocked thread.
    """

    __slots__ = ("frame", "have")

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.frame: bytearray | None = None  # the long frame being read
        self.have = 0

    def pop(self) -> Any:
        if self.frame is None:
            return super().pop()
        if self.have < len(self.frame):
            return None
        frame, self.frame = self.frame, None
        return frame

    def _read_long(self, frame: bytearray, have: int) -> Any:
        self.frame, self.have = frame, have
        if not self._fill_long():
            raise EOFError("end of file in the middle of a message")
        return self.pop()

    def _fill_long(self) -> bool:
        frame = self.frame
        assert frame is not None
        size = len(frame)
        with memoryview(frame) as view:
            try:
                while self.have < size:
                    got = os.readv(self.fd, [view[self.have : self.have + (1 << 30)]])
                    if not got:
                        return False
                    self.have += got
            except BlockingIOError:
                pass
        return True

    def fill(self) -> bool:
        """Read what is there now (perhaps nothing); False at end of file."""
        if self.frame is not None:
            return self._fill_long()
        try:
            chunk = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf = self.buf + chunk if self.buf else chunk
        return True


#
# The worker process
#


class _UnloadableFunction:
    """Stands in for a call's function that could not be unpickled in the worker."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        raise self.error


def worker(
    tasks: Any,
    results: Any,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    maxtasks: int | None = None,
    wrap_exception: bool = True,
) -> None:
    """The loop a pool's worker process runs.

    Args:
        tasks: Connection the task frames arrive on.
        results: Connection the results go back on, in the order of the tasks.
        initializer, initargs: Called once, before the first task.
        maxtasks: Exit after this many tasks (None: never).
        wrap_exception: Send exceptions with their traceback (as ``__cause__``).
    """
    serializers: dict[int, reduction.Serializer] = {}

    def serializer(code: int) -> reduction.Serializer:
        found = serializers.get(code)
        if found is None:
            found = serializers[code] = reduction.get_serializer(_SERIALIZER_NAMES.get(code))
        return found

    def wrap(exc: BaseException) -> Any:
        return ExceptionWithTraceback(exc, exc.__traceback__) if wrap_exception else exc

    def send(code: int, ok: Any, value: Any) -> None:
        try:
            data = serializer(code).dumps((ok, value))
        except Exception as e:  # noqa: BLE001 - any failure becomes the task's error
            inner = value.exc if isinstance(value, ExceptionWithTraceback) else value
            wrapped = MaybeEncodingError(e, inner)
            util.debug("possible encoding error while sending result: %s", wrapped)
            data = serializer(code).dumps((False, wrapped))
        results.send_bytes(data)

    try:
        results.send_bytes(_MSG_STARTED)
        if initializer is not None:
            try:
                initializer(*initargs)
            except Exception as e:  # noqa: BLE001 - reported to the parent, which breaks the pool
                send(_DEFAULT_SERIALIZER_CODE, None, ExceptionWithTraceback(e, e.__traceback__))
                return
        results.send_bytes(_MSG_READY)
        _serve(tasks, send, wrap, maxtasks)
    except BrokenPipeError:
        util.debug("worker's parent has gone -- exiting")


def _serve(
    tasks: Any,
    send: Callable[..., None],
    wrap: Callable[[BaseException], Any],
    maxtasks: int | None,
) -> None:
    """Run tasks until told to stop, the pipe closes or ``maxtasks`` are done."""

    functions: collections.OrderedDict[int, Any] = collections.OrderedDict()
    reader = _FrameReader(tasks.fileno())
    completed = 0
    while maxtasks is None or completed < maxtasks:
        try:
            frame = reader.next()
        except (EOFError, OSError):
            util.debug("worker got EOFError or OSError -- exiting")
            break
        if not frame:
            util.debug("worker got sentinel -- exiting")
            break
        view = memoryview(frame)
        key, kind, code, flen = _TASK_HEADER.unpack_from(view)
        start = _TASK_HEADER.size
        try:
            if flen:
                # A function we have not seen: keep it, evicting the oldest one
                # exactly as the coordinator's mirror of this cache does.
                try:
                    entry = reduction.loads(view[start : start + flen])
                except Exception as e:  # noqa: BLE001 - every task using it gets the error
                    entry = _UnloadableFunction(e)
                if len(functions) >= _FUNCTION_CACHE_SIZE:
                    functions.popitem(last=False)
                functions[key] = entry
                start += flen
            func = functions[key]
            payload: Any = reduction.loads(view[start:])
            result: tuple[bool, Any] = (True, _run_task(func, kind, payload))
        except Exception as e:  # noqa: BLE001 - the task's error, sent to the caller
            result = (False, wrap(e))
        send(code, *result)
        frame = view = func = payload = result = None  # type: ignore[assignment]
        completed += 1
    util.debug("worker exiting after %d tasks", completed)


#
# Results
#


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


#
# Calls and their tasks
#


class _Job:
    """One call (apply_async, map, imap...): its result, function and inputs.

    ``draw()`` hands out the call's tasks one at a time, lazily, so that an
    imap over a generator reads it only as fast as the workers go.  If the
    inputs raise, the error takes the place of the next task and the call ends.
    """

    __slots__ = (
        "_next",
        "_payloads",
        "_started",
        "api",
        "chunksize",
        "done",
        "fentry",
        "func",
        "id",
        "kind",
        "result",
        "serializer",
    )

    def __init__(
        self,
        result: Any,
        func: Callable[..., Any],
        kind: int,
        payloads: Iterable[Any],
        api: str,
        chunksize: int = 1,
        serializer: reduction.Serializer | None = None,
    ) -> None:
        self.id = result._job
        self.result = result
        self.func = func
        self.kind = kind
        self.serializer = serializer
        self.api = api
        self.chunksize = chunksize
        self._payloads: Any = payloads
        self._next = 0
        self._started = False
        self.done = False
        self.fentry: _PickledFunction | None = None

    def draw(self) -> tuple[int, Any] | None:
        """Return ``(index, payload)`` of the next task, or None when there are no more."""
        if self._payloads is None:
            return None
        index = self._next
        try:
            if not self._started:
                # iter() here, not in the caller: its errors are the first task's.
                self._started = True
                self._payloads = iter(self._payloads)
            payload = next(self._payloads)
        except StopIteration:
            self.end(index)
            return None
        except Exception as e:  # noqa: BLE001 - the inputs' error is the caller's
            self.fail(index, e)
            return None
        self._next = index + 1
        return index, payload

    def end(self, count: int) -> None:
        self._payloads = None
        self.done = True
        self.result._tasks_ended(count)

    def fail(self, index: int, exc: BaseException) -> None:
        """Fail task ``index`` with ``exc`` and issue no more tasks."""
        self._payloads = None
        self.done = True
        self.result._set(index, (False, exc))
        self.result._tasks_ended(index + 1)

    def describe(self, index: int) -> str:
        """Which part of the call task ``index`` is, for error messages."""
        name = _callable_name(self.func)
        if self.kind == _APPLY:
            return f"{self.api}({name})"
        if self.kind == _ONE:
            return f"item {index} of the iterable passed to {self.api}({name})"
        first = index * self.chunksize
        return (
            f"items {first}-{first + self.chunksize - 1} of the iterable passed "
            f"to {self.api}({name})"
        )


class _Task:
    __slots__ = ("body", "entry", "index", "job")

    def __init__(self, job: _Job, index: int, body: bytes, entry: _PickledFunction) -> None:
        self.job = job
        self.index = index
        self.body = body  # the pickled payload
        self.entry = entry  # the pickled function


class _PickledFunction:
    __slots__ = ("cache_key", "data", "fingerprint", "func", "key", "uses")

    def __init__(self, data: bytes, func: Any, fingerprint: tuple | None, cache_key: Any) -> None:
        self.key = next(_job_counter)  # what workers know it by
        self.data = data
        self.func = func
        self.fingerprint = fingerprint
        self.cache_key = cache_key
        self.uses = 1


_NOTHING = object()


def _fingerprint(func: Any) -> tuple | None:
    """What a plain function's pickle depends on, for ``_PickledFunctions``.

    Its code, defaults, closure contents and the globals it names (and those
    of the plain functions among them, a few levels deep), as objects to
    compare by identity.  None for anything but a plain function.
    """
    if type(func) is not types.FunctionType:
        return None
    out: list[Any] = []
    seen: set[int] = set()

    def collect(f: types.FunctionType, depth: int) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        code = f.__code__
        out.extend((f, code, f.__defaults__, f.__kwdefaults__))
        nested = []
        for cell in f.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                value = _NOTHING
            out.append(value)
            nested.append(value)
        names_of = f.__globals__
        codes = [code]
        while codes:
            c = codes.pop()
            for name in c.co_names:
                value = names_of.get(name, _NOTHING)
                out.append(value)
                nested.append(value)
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        if depth < 3:
            for value in nested:
                if type(value) is types.FunctionType:
                    collect(value, depth + 1)

    collect(func, 0)
    return tuple(out)


class _PickledFunctions:
    """The pickled functions of the tasks in flight, reused while unchanged.

    Pickling a lambda or a ``__main__`` function goes through dill (about 100
    microseconds), which would dominate a burst of ``apply_async`` calls.  A
    call whose function is the very object of a task still in flight, with
    the same code, defaults, closure contents and globals (compared by
    identity, see ``_fingerprint``), reuses that task's pickle; and workers
    that already have it are not sent it again.  Once no task uses an entry
    it is dropped, so a later call pickles the function afresh, as it is then.
    In-place changes to a global's contents while tasks that use it are in
    flight may therefore not reach calls made meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Any, _PickledFunction] = {}

    def acquire(self, func: Any, serializer: reduction.Serializer) -> _PickledFunction:
        """The pickled ``func`` for one more task (raises if it cannot be pickled)."""
        fingerprint = _fingerprint(func)
        cache_key = (id(func), serializer.name) if fingerprint is not None else None
        if cache_key is not None:
            with self._lock:
                entry = self._entries.get(cache_key)
                if entry is not None and _same(entry.fingerprint, fingerprint):  # type: ignore[arg-type]
                    entry.uses += 1
                    return entry
        entry = _PickledFunction(serializer.dumps(func), func, fingerprint, cache_key)
        if cache_key is not None:
            with self._lock:
                self._entries[cache_key] = entry
        return entry

    def retain(self, entry: _PickledFunction) -> None:
        with self._lock:
            entry.uses += 1

    def release(self, entry: _PickledFunction) -> None:
        with self._lock:
            entry.uses -= 1
            if entry.uses <= 0 and self._entries.get(entry.cache_key) is entry:
                del self._entries[entry.cache_key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _explain_task_pickling_error(
    job: _Job, index: int, payload: Any, exc: BaseException
) -> BaseException:
    """Find the argument that could not be pickled and say so."""
    dumps = job.serializer.dumps  # type: ignore[union-attr]

    def fails(obj: Any) -> bool:
        try:
            dumps(obj)
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return True
        return False

    where = job.describe(index)
    if job.kind == _APPLY:
        args, kwds = payload
        if fails(job.func):
            return _pickling_failure(exc, f"cannot serialize the function of {where}")
        for i, arg in enumerate(args):
            if fails(arg):
                return _pickling_failure(
                    exc, f"cannot serialize argument {i} ({_short_repr(arg)}) of {where}"
                )
        for key, arg in kwds.items():
            if fails(arg):
                return _pickling_failure(
                    exc,
                    f"cannot serialize keyword argument {key!r} ({_short_repr(arg)}) of {where}",
                )
        return _pickling_failure(exc, f"cannot serialize the arguments of {where}")
    if job.kind == _ONE:
        return _pickling_failure(exc, f"cannot serialize {where} ({_short_repr(payload)})")
    for offset, item in enumerate(payload):
        if fails(item):
            position = index * job.chunksize + offset
            return _pickling_failure(
                exc,
                f"cannot serialize item {position} ({_short_repr(item)}) of the iterable "
                f"passed to {job.api}({_callable_name(job.func)})",
            )
    return _pickling_failure(exc, f"cannot serialize {where}")


#
# The coordinator of a process pool
#


class _Worker:
    """A worker process as the coordinator sees it."""

    __slots__ = (
        "assigned",
        "busy_since",
        "closed_in",
        "depth",
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
                    thread.join()
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
        return _Task(job, index, body, entry)

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
                # Result pipes, worker sentinels and the wake-up pipe, together.
                ready = {fd for fd, _event in self._poller.poll(self._end_unreachable())}
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

    def _room(self, w: _Worker, task: _Task) -> bool:
        """Whether ``w`` may be sent ``task`` now."""
        if not w.ready or w.closed_in or w.gone:
            return False
        if not w.outstanding:
            return True  # it is waiting for a task, reading its pipe
        # A busy worker only gets what fits in the pipe's buffer (so that the
        # write cannot block), and only if its tasks are short (else tasks
        # would queue behind long ones).
        if len(w.outstanding) >= w.depth:
            return False
        size = len(task.body) + _TASK_HEADER.size + 12
        if task.entry.key not in w.functions:
            size += len(task.entry.data)
        return w.unread + size <= _PIPELINE_BUDGET

    def _dispatch(self) -> None:
        ready = self._ready
        workers = list(self._workers.values())
        batches: dict[_Worker, tuple[list[Any], list[int]]] = {}
        while ready:
            task = ready[0]
            best = None
            for w in workers:
                if self._room(w, task) and (
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
        header = _TASK_HEADER.pack(entry.key, job.kind, code, len(fbytes))
        size = _frame_parts(batch, (header, fbytes, task.body))
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
                f"its result pipe closed, yet it was still running "
                f"{_UNREACHABLE_GRACE:g} s later"
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
        task.job.result._set(task.index, (ok, value))

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
        self._forget_worker(w)
        util.debug("pool worker %s exited with %s", w.pid, exitcode)
        outstanding = w.outstanding
        if outstanding and w.ready and not self._terminating and was_read:
            task, _size = outstanding.popleft()
            self._functions.release(task.entry)
            task.job.result._set(
                task.index, (False, _worker_death_error(w.pid, exitcode, w.killed_why))
            )
        # The others never started: they go to other workers, in order.
        for task, _size in reversed(outstanding):
            self._sent_bytes -= len(task.body)
            self._ready.appendleft(task)
        outstanding.clear()
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
        try:
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
                ),
            )
            process.name = process.name.replace("Process", "PoolWorker")
            process.daemon = True
            w = _Worker(process, task_w, result_r)
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
            jobs = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        # The coordinator thread kills the workers (see _run and _shutdown).
        self._ready.clear()
        self._fail_pending(self._broken_error)
        for job in jobs:
            job.result._abandon(self._broken_error())
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
        """SIGTERM every worker, SIGKILL those still there after a grace period, reap all."""
        workers = list(self._workers.values())
        for w in workers:
            if w.process.exitcode is None:
                w.process.terminate()
        deadline = time.monotonic() + _TERMINATE_GRACE
        pending = [w for w in workers if hasattr(w.process, "sentinel")]
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            gone = set(connection.wait([w.process.sentinel for w in pending], remaining))
            pending = [w for w in pending if w.process.sentinel not in gone]
        for w in pending:
            w.process.kill()
        for w in workers:
            w.process.join()
            self._forget_worker(w)

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


def _frame_parts(out: list[Any], parts: Iterable[Any]) -> int:
    """Append one message in the Connection wire format to ``out``; return its size."""
    parts = [p for p in parts if len(p)]
    size = sum(len(p) for p in parts)
    if size > 0x7FFFFFFF:
        prefix = _LENGTH.pack(-1) + _LONG_LENGTH.pack(size)
    else:
        prefix = _LENGTH.pack(size)
    out.append(prefix)
    out.extend(parts)
    return len(prefix) + size


def _write_some(fd: int, parts: list[Any]) -> list[memoryview]:
    """Write what the non-blocking ``fd`` takes now of ``parts``; return the rest.

    Small messages go in one ``write``; the rest is returned as a list of
    memoryviews (empty when everything was written).
    """
    if sum(len(p) for p in parts) <= 65536:
        data = b"".join(parts)
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        return [memoryview(data)[written:]] if written < len(data) else []
    return _writev_some(fd, [memoryview(p).cast("B") for p in parts if len(p)])


def _writev_some(fd: int, views: list[memoryview]) -> list[memoryview]:
    """Write to the non-blocking ``fd`` what it takes now of ``views``, dropping
    what was written from the list (in place); return the list."""
    try:
        while views:
            advance(views, os.writev(fd, first_bytes(views)))
    except BlockingIOError:
        pass
    return views


#
# The coordinator of a thread pool
#


class _ThreadCoordinator:
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
        from .dummy import DummyProcess

        while len(self.pool) < self._processes:
            t = DummyProcess(target=self._work)
            t.name = t.name.replace("Process", "PoolWorker")
            t.daemon = True
            t.start()
            self.pool.append(t)

    def start(self) -> None:
        pass

    def wake(self) -> None:
        pass

    def submit(self, job: _Job) -> None:
        with self._cond:
            if self._accepting:
                self._jobs.append(job)
                self._cond.notify()
                return
        if self.broken is not None:
            exc: BaseException = self._broken_error()
        elif self._terminating:
            exc = PoolTerminatedError("the pool was terminated")
        else:
            exc = ValueError("Pool not running")
        job.result._abandon(exc)

    def _broken_error(self) -> BrokenPoolError:
        assert self.broken is not None
        error = BrokenPoolError(*self.broken.args)
        error.__cause__ = self.broken.__cause__
        return error

    def close(self) -> None:
        with self._cond:
            self._accepting = False
            self._closing = True
            self._cond.notify_all()

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
            self._accepting = False
            self._terminating = True
            jobs = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        error = lambda: PoolTerminatedError("the pool was terminated before this task finished")
        for result in list(self._cache.values()):
            result._abandon(error())
        for job in jobs:
            job.result._abandon(error())

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
            index, payload = drawn
            try:
                result: tuple[bool, Any] = (True, _run_task(job.func, job.kind, payload))
            except BaseException as e:  # noqa: BLE001 - the task's error, like concurrent.futures
                result = (False, e)
            job.result._set(index, result)
            job = drawn = payload = result = None  # type: ignore[assignment]

    def _break(self, exc: BaseException) -> None:
        name = _callable_name(self._initializer)
        error = BrokenPoolError(
            f"the pool's initializer {name} raised {type(exc).__name__}: {exc}. Every "
            f"pending and future task of this pool fails; fix the initializer (its "
            f"error is the cause below) and make a new pool."
        )
        error.__cause__ = exc
        with self._cond:
            if self.broken is not None:
                return
            self.broken = error
            self._accepting = False
            jobs = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for result in list(self._cache.values()):
            result._abandon(self._broken_error())
        for job in jobs:
            job.result._abandon(self._broken_error())


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


#
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

    A worker that dies fails the task it was running with
    :class:`TerminatedWorkerError` and is replaced.  Use the pool as a context
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
    ) -> None:
        # Set first: __del__ looks at them even if __init__ fails.
        self._pool: list[Any] = []
        self._state = INIT

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
        )

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
    ) -> None:
        serializer = self._call_serializer()
        result._call = f"{api}({_callable_name(func)})"
        self._coordinator.submit(_Job(result, func, kind, payloads, api, chunksize, serializer))

    def _call_serializer(self) -> reduction.Serializer | None:
        # Looked up at each call, so that set_serializer() applies at once.
        return _serializer_of(self._ctx)

    # -- the API ------------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] = {},  # noqa: B006 - the standard library's signature
    ) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and return the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] = {},  # noqa: B006 - the standard library's signature
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> ApplyResult:
        """Start ``func(*args, **kwds)`` in a worker; return an ``AsyncResult``.

        ``callback(result)`` or ``error_callback(exception)`` is called in a
        pool thread when the call completes; keep them short.
        """
        self._check_running()
        payload = (tuple(args), dict(kwds))
        result = ApplyResult(self, callback, error_callback)
        self._submit(result, func, _APPLY, [payload], "apply_async")
        return result

    def map(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """Return ``[func(x) for x in iterable]``, computed by the workers in chunks."""
        return self._map_async(func, iterable, _MAP, chunksize, api="map").get()

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        """Like ``map()``, returning a ``MapResult`` at once."""
        return self._map_async(
            func, iterable, _MAP, chunksize, callback, error_callback, "map_async"
        )

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
    ) -> list[Any]:
        """Return ``[func(*args) for args in iterable]``, computed by the workers."""
        return self._map_async(func, iterable, _STARMAP, chunksize, api="starmap").get()

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        """Like ``starmap()``, returning a ``MapResult`` at once."""
        return self._map_async(
            func, iterable, _STARMAP, chunksize, callback, error_callback, "starmap_async"
        )

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        kind: int,
        chunksize: int | None = None,
        callback: Any = None,
        error_callback: Any = None,
        api: str = "map",
    ) -> MapResult:
        self._check_running()
        if chunksize is not None:
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
        result = MapResult(self, chunksize, length, callback, error_callback=error_callback)
        if chunksize > 0:
            self._submit(result, func, kind, _chunks(iterable, chunksize), api, chunksize)
        return result

    def imap(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> Iterator[Any]:
        """Like ``map()``, but yield the results in order as they come; inputs are read lazily."""
        return self._imap(IMapIterator, func, iterable, chunksize, "imap")

    def imap_unordered(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> Iterator[Any]:
        """Like ``imap()``, but yield results in the order they complete."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, "imap_unordered")

    def _imap(
        self,
        iterator_class: type,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        api: str,
    ) -> Iterator[Any]:
        self._check_running()
        # The stdlib words the two methods' messages slightly differently.
        chunksize = _check_chunksize(chunksize, "{:n}".format if api == "imap" else repr)
        if chunksize == 1:
            result = iterator_class(self)
            self._submit(result, func, _ONE, iterable, api)
            return result
        result = iterator_class(self)
        self._submit(result, func, _MAP, _chunks(iterable, chunksize), api, chunksize)
        return (item for chunk in result for item in chunk)

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

    def join(self) -> None:
        """Wait for the workers to exit; call ``close()`` or ``terminate()`` first."""
        util.debug("joining pool")
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._coordinator.join()

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
        from .dummy import Process

        return Process(*args, **kwds)

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        Pool.__init__(self, processes, initializer, initargs)

    def _call_serializer(self) -> reduction.Serializer | None:
        return None  # threads share objects: nothing is pickled

    def _make_coordinator(self) -> Any:
        return _ThreadCoordinator(
            self._processes, self._initializer, self._initargs, False, self._cache
        )
