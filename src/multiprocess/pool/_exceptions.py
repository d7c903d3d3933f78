"""The exceptions of a pool's tasks, and the messages that explain them (layer 5).

Exceptions raised in a worker travel back with their traceback
(``ExceptionWithTraceback``, rebuilt as ``__cause__`` by ``rebuild_exc``);
faults of the pool itself (a dead worker, a result that cannot cross, a
broken or terminated pool) become exceptions that say what happened and
what to do.  Public names are re-exported by :mod:`multiprocess.pool`.
"""

from __future__ import annotations

import pickle
import signal
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from .. import reduction
from .._errors import ProcessError
from .._forklock import FORK_LOCK


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker.

    Attached as ``__cause__`` of the exception the caller gets, so that the
    worker's traceback is printed with it.
    """

    # (position in its task, short repr) of the item the function raised for,
    # when the worker knew it (see _notes): read by the coordinator.
    item: tuple[int, str] | None = None

    def __init__(self, tb: str) -> None:
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class ExceptionWithTraceback:
    """An exception and its formatted traceback, pickled together (worker side)."""

    def __init__(self, exc: BaseException, tb: Any, item: tuple[int, str] | None = None) -> None:
        with FORK_LOCK:  # not imported at start-up (see _adopt_futures_bases)
            import traceback

        text = "".join(traceback.format_exception(type(exc), exc, tb))
        self.exc = exc
        self.tb = f'\n"""\n{text}"""'
        self.item = item  # which item of the task raised it (see _notes)

    def __reduce__(self) -> Any:
        if self.item is None:
            return rebuild_exc, (self.exc, self.tb)
        return rebuild_exc, (self.exc, self.tb, self.item)


def rebuild_exc(exc: BaseException, tb: str, item: tuple[int, str] | None = None) -> BaseException:
    """Unpickle an ``ExceptionWithTraceback``: the exception, caused by its traceback."""
    cause = RemoteTraceback(tb)
    if item is not None:
        cause.item = item
    exc.__cause__ = cause
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


class MemoryLimitError(TerminatedWorkerError):
    """The worker running this task went above the pool's ``memory_limit`` and was killed.

    The message names the limit, the resident size the worker reached, the
    function and the item; the attributes ``limit`` and ``size`` (bytes) say
    the same, and ``pid`` and ``exitcode`` name the worker, as for any
    :class:`TerminatedWorkerError`.  Only this task (this item of a chunk)
    fails; the pool has started a replacement worker.
    """

    def __init__(
        self,
        message: str,
        pid: int | None = None,
        exitcode: int | None = None,
        limit: int | None = None,
        size: int | None = None,
    ):
        super().__init__(message, pid, exitcode)
        self.limit = limit
        self.size = size

    def __reduce__(self) -> Any:
        return type(self), (self.args[0], self.pid, self.exitcode, self.limit, self.size)


class BrokenPoolError(ProcessError, RuntimeError):
    """The pool cannot run tasks any more.

    Its initializer raised (that exception is the ``__cause__``), or its workers
    kept dying while they started.  Every pending and future task fails with
    this error; create a new pool once the cause is fixed.

    It is also a ``concurrent.futures.process.BrokenProcessPool`` (hence a
    ``BrokenExecutor`` and a ``RuntimeError``), so that ``except`` clauses
    written for ``concurrent.futures`` or loky catch it.
    """

    def __init__(self, *args: Any) -> None:
        _adopt_futures_bases(BrokenPoolError, (ProcessError,))
        super().__init__(*args)


def _adopt_futures_bases(cls: type, first: tuple[type, ...]) -> None:
    """Put ``cls`` (whose other bases are ``first``) under ``concurrent.futures``' classes.

    ``concurrent.futures.process`` imports the standard ``multiprocessing``
    package, which this package must not import, and ``concurrent.futures``
    itself imports ``logging`` (and with it ``traceback``), a tenth of what a
    short script's pool costs.  So ``cls`` starts out under ``RuntimeError``,
    moves under ``BrokenExecutor`` (a ``RuntimeError``) once someone has
    imported ``concurrent.futures``, and under ``BrokenProcessPool`` once
    someone has imported ``concurrent.futures.process``: whoever writes
    ``except BrokenExecutor`` or ``except BrokenProcessPool`` has.  This runs
    at import, when ``multiprocess.futures`` is imported, and each time an
    instance is made, i.e. before it is raised.  ``except`` and
    ``isinstance`` follow the class's real ``__mro__`` (an ABC-style
    ``register`` would not do for ``except``), which assigning ``__bases__``
    recomputes.
    """
    base = getattr(sys.modules.get("concurrent.futures.process"), "BrokenProcessPool", None)
    if not isinstance(base, type):
        base = getattr(sys.modules.get("concurrent.futures._base"), "BrokenExecutor", None)
    if isinstance(base, type) and base not in cls.__mro__:
        cls.__bases__ = (*first, base)


_adopt_futures_bases(BrokenPoolError, (ProcessError,))


class PoolTerminatedError(ProcessError, RuntimeError):
    """``terminate()`` was called (or the pool was garbage collected) before the task finished.

    It is also a ``RuntimeError``, which code written for other pools catches.
    """


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


# Known by the package's name, as before the package was split (see the package docstring).
for _public in (
    BrokenPoolError,
    ExceptionWithTraceback,
    MaybeEncodingError,
    MemoryLimitError,
    PoolTerminatedError,
    RemoteTraceback,
    ResultUnpicklingError,
    TerminatedWorkerError,
    rebuild_exc,
):
    _public.__module__ = "multiprocess.pool"
del _public
