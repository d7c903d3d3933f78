"""Finalizers, after-fork hooks, logging and small OS helpers (layer 3).

Everything that must happen when a process exits (``Finalize`` callbacks, joining
children) or right after a fork (``register_after_fork``) is registered here.

Compatibility hooks: CPython's own multiprocessing test suite reaches into
``_finalizer_registry``, ``_afterfork_registry``, ``_run_finalizers``,
``_exit_function`` and ``_cleanup_tests``.  They are kept with those names and
meanings; nothing else in the package should depend on them being module globals.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
import warnings
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    import logging
    import subprocess
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, Callable

from ._forklock import FORK_LOCK

# logging, subprocess, shutil and tempfile are imported where first needed, under
# the lock fork() waits for: ``import multiprocess`` costs about what the
# standard library's import does.

__all__ = [
    "SUBDEBUG",
    "SUBWARNING",
    "Finalize",
    "ForkAwareLocal",
    "ForkAwareThreadLock",
    "close_all_fds_except",
    "debug",
    "get_logger",
    "get_temp_dir",
    "info",
    "is_exiting",
    "log_to_stderr",
    "register_after_fork",
    "sub_debug",
    "sub_warning",
]

#
# Logging
#

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

LOGGER_NAME = "multiprocess"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"

_logger: logging.Logger | None = None
_log_to_stderr = False


def sub_debug(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(SUBDEBUG, msg, *args, stacklevel=2)


def debug(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(DEBUG, msg, *args, stacklevel=2)


def info(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(INFO, msg, *args, stacklevel=2)


def sub_warning(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(SUBWARNING, msg, *args, stacklevel=2)


def get_logger() -> logging.Logger:
    """Return the package's logger (named ``multiprocess``), creating it if needed.

    It does not propagate to the root logger and has no handler until
    ``log_to_stderr()`` is called.
    """
    global _logger
    with FORK_LOCK:
        import logging
    with logging._lock:  # type: ignore[attr-defined]
        if not _logger:
            _logger = logging.getLogger(LOGGER_NAME)
            _logger.propagate = False
            logging.addLevelName(SUBDEBUG, "SUBDEBUG")
            logging.addLevelName(SUBWARNING, "SUBWARNING")
            # Flush logs on exit before our own finalizers run: register after
            # the logging module's shutdown hook so that ours runs first.
            atexit.unregister(_exit_function)
            atexit.register(_exit_function)
    return _logger


def log_to_stderr(level: int | None = None) -> logging.Logger:
    """Make the package logger write to stderr (optionally at ``level``) and return it."""
    global _log_to_stderr
    logger = get_logger()
    import logging  # imported by get_logger()

    formatter = logging.Formatter(DEFAULT_LOGGING_FORMAT)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _log_to_stderr = True
    return logger


#
# Abstract sockets (Linux only)
#


def _platform_supports_abstract_sockets() -> bool:
    return sys.platform in ("linux", "android")


abstract_sockets_supported = _platform_supports_abstract_sockets()


def is_abstract_socket_namespace(address: Any) -> bool:
    """True when ``address`` names a Linux abstract-namespace unix socket."""
    if not address:
        return False
    if isinstance(address, bytes):
        return address[0] == 0
    if isinstance(address, str):
        return address[0] == "\0"
    raise TypeError(f"address type of {address!r} unrecognized")


#
# Temporary directory, removed at exit by the process that made it
#


def _remove_temp_dir(rmtree: Callable[..., None], tempdir: str) -> None:
    rmtree(tempdir, ignore_errors=True)
    from . import process

    # The directory may be re-created by a later call; forget it.
    process.current_process()._config["tempdir"] = None


def get_temp_dir() -> str:
    """Return a private temporary directory for this process tree, creating it once.

    It is removed when the process that created it exits.
    """
    from . import process

    config = process.current_process()._config
    tempdir = config.get("tempdir")
    if tempdir is None:
        with FORK_LOCK:
            import shutil
            import tempfile
        tempdir = tempfile.mkdtemp(prefix="pymp-")
        info("created temp directory %s", tempdir)
        # rmtree is bound now: at interpreter exit the shutil module may be gone.
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
        config["tempdir"] = tempdir
    return tempdir


#
# After-fork hooks
#

_afterfork_registry: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def _run_after_forkers() -> None:
    """Run every registered after-fork hook, in registration order (in a new child)."""
    items = sorted(_afterfork_registry.items())
    for (_index, _ident, func), obj in items:
        try:
            func(obj)
        except Exception as e:  # noqa: BLE001 - one failing hook must not stop the others
            info("after forker raised exception %s", e)


def register_after_fork(obj: Any, func: Callable[[Any], None]) -> None:
    """Call ``func(obj)`` in every child process right after it starts.

    ``obj`` is held weakly: once it is garbage collected the hook is dropped.
    """
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


#
# Finalizers
#

_finalizer_registry: dict = {}
_finalizer_counter = itertools.count()


class Finalize:
    """Call ``callback(*args, **kwargs)`` when ``obj`` is collected or at exit.

    Args:
        obj: the object whose collection triggers the callback (held weakly), or
            None for a callback that only runs at exit (then ``exitpriority`` is
            required).
        callback: what to call, at most once.
        exitpriority: None means "only when obj is collected"; otherwise the
            callback also runs at process exit, higher priorities first, and
            among equal priorities the most recently registered first.
    """

    def __init__(
        self,
        obj: Any,
        callback: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        exitpriority: int | None = None,
    ) -> None:
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f"Exitpriority ({exitpriority!r}) must be None or int, not {type(exitpriority)}"
            )
        if obj is not None:
            self._weakref: Any = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        self._callback: Callable[..., Any] | None = callback
        self._args: Sequence[Any] = args
        self._kwargs: Mapping[str, Any] = kwargs or {}
        self._key: tuple | None = (exitpriority, next(_finalizer_counter))
        self._pid = os.getpid()
        _finalizer_registry[self._key] = self

    def __call__(
        self,
        wr: Any = None,
        # Bound now so that they still exist while the interpreter shuts down.
        _finalizer_registry: dict = _finalizer_registry,
        sub_debug: Callable[..., None] = sub_debug,
        getpid: Callable[[], int] = os.getpid,
    ) -> Any:
        """Run the callback if it is still pending; return its result."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            sub_debug("finalizer no longer registered")
            return None
        if self._pid != getpid():
            sub_debug("finalizer ignored because different process")
            res = None
        else:
            sub_debug(
                "finalizer calling %s with args %s and kwargs %s",
                self._callback,
                self._args,
                self._kwargs,
            )
            assert self._callback is not None
            res = self._callback(*self._args, **self._kwargs)
        self._weakref = self._callback = self._args = self._kwargs = self._key = None  # type: ignore[assignment]
        return res

    def cancel(self) -> None:
        """Forget the callback without calling it."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            pass
        else:
            self._weakref = self._callback = self._args = self._kwargs = self._key = None  # type: ignore[assignment]

    def still_active(self) -> bool:
        """True while the callback has neither run nor been cancelled."""
        return self._key in _finalizer_registry

    def __repr__(self) -> str:
        try:
            obj = self._weakref()
        except (AttributeError, TypeError):
            obj = None
        if obj is None:
            return f"<{self.__class__.__name__} object, dead>"
        x = "<{} object, callback={}".format(
            self.__class__.__name__,
            getattr(self._callback, "__name__", self._callback),
        )
        if self._args:
            x += ", args=" + str(self._args)
        if self._kwargs:
            x += ", kwargs=" + str(self._kwargs)
        if self._key and self._key[0] is not None:
            x += ", exitpriority=" + str(self._key[0])
        return x + ">"


def _run_finalizers(minpriority: int | None = None) -> None:
    """Run pending finalizers, highest priority first.

    With ``minpriority`` None, run those that have any exit priority; otherwise
    only those whose priority is at least ``minpriority``.
    """
    if _finalizer_registry is None:  # interpreter shutdown
        return
    if minpriority is None:

        def wanted(p: Any) -> bool:
            return p[0] is not None

    else:

        def wanted(p: Any) -> bool:
            return p[0] is not None and p[0] >= minpriority

    # Finalizers may register or cancel others while we run: re-read the
    # registry's keys after each batch instead of iterating over it live.
    keys = [key for key in list(_finalizer_registry) if wanted(key)]
    keys.sort(reverse=True)
    for key in keys:
        finalizer = _finalizer_registry.get(key)
        if finalizer is not None:
            sub_debug("calling %s", finalizer)
            try:
                finalizer()
            except Exception:  # noqa: BLE001 - reported; the other finalizers still run
                import traceback

                traceback.print_exc()
    if minpriority is None:
        _finalizer_registry.clear()


#
# Exit
#

_exiting = False


def is_exiting() -> bool:
    """True once this process has started to shut down."""
    return _exiting or _exiting is None


def _exit_function() -> None:
    """Shut this process down in order: finalizers, children, remaining finalizers.

    Registered with atexit, in the main process and in every child (whose
    launcher runs the atexit handlers when ``run()`` has returned), so that it
    runs after the handlers registered later, as at a normal exit.
    """
    global _exiting
    if _exiting:
        return
    _exiting = True
    info("process shutting down")
    debug("running all 'atexit' finalizers with priority >= 0")
    _run_finalizers(0)

    from . import process

    current = process.current_process()
    if current is not None:
        # Daemonic children are terminated; the others are waited for.
        for p in process.active_children():
            if p.daemon:
                info("calling terminate() for daemon %s", p.name)
                p._popen.terminate()
        for p in process.active_children():
            info("calling join() for process %s", p.name)
            p.join()
    debug("running the remaining 'atexit' finalizers")
    _run_finalizers()


atexit.register(_exit_function)


def _reset_in_child() -> None:
    """Start a new child with no inherited finalizers and run the after-fork hooks."""
    global _exiting
    _exiting = False
    _finalizer_registry.clear()
    _run_after_forkers()


def _cleanup_tests() -> None:
    """Cleanup for test suites: stop helper processes and run all finalizers."""
    from . import process

    # Stop the forkserver and the resource tracker if they were started, so
    # that leak checks between tests see no stray processes.
    for modname in ("forkserver", "resource_tracker"):
        mod = sys.modules.get(f"{__package__}.{modname}")
        stop = getattr(mod, "_stop", None) if mod is not None else None
        if stop is not None:
            stop()
    process._cleanup()
    _run_finalizers()


#
# Locks that are replaced by fresh ones in a forked child
#


class ForkAwareThreadLock:
    """A ``threading.Lock`` that is replaced by a new, released lock after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()  # type: ignore[attr-defined]

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        self._lock.release()


class ForkAwareLocal(threading.local):
    """A ``threading.local`` whose contents are cleared in a forked child."""

    def __init__(self) -> None:
        register_after_fork(self, lambda obj: obj.__dict__.clear())

    def __reduce__(self) -> tuple:
        return type(self), ()


#
# File descriptors
#

try:
    MAXFD = os.sysconf("SC_OPEN_MAX")
except (OSError, ValueError):
    MAXFD = 256


def close_all_fds_except(fds: Iterable[int]) -> None:
    """Close every file descriptor of this process except those in ``fds``."""
    keep = sorted(set(fds) | {-1, MAXFD})
    for low, high in zip(keep, keep[1:]):
        if high > low + 1:
            os.closerange(low + 1, high)


def close_fds(*fds: int) -> None:
    """Close each of the given file descriptors."""
    for fd in fds:
        os.close(fd)


def spawnv_passfds(path: str, args: Sequence[str], passfds: Iterable[int]) -> subprocess.Popen:
    """Start ``path`` with ``args``, passing exactly ``passfds`` (and 0-2) to it.

    Returns the ``subprocess.Popen`` object; callers must keep it to reap the
    child (``subprocess`` would otherwise reap it behind their back).
    """
    fds = tuple(sorted(set(passfds)))
    with FORK_LOCK:
        import subprocess
    return subprocess.Popen(list(args), executable=path, pass_fds=fds, close_fds=True, env=None)


def _close_stdin() -> None:
    """Replace stdin by /dev/null in a new child (it must not read the parent's)."""
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            sys.stdin = open(fd, encoding="utf-8", closefd=False)  # noqa: SIM115 - stays open
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        pass


def _flush_std_streams() -> None:
    """Flush stdout and stderr (before forking, so buffers are not written twice)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError):
            pass


#
# Long-lived helper processes (the fork server, the resource tracker)
#


def drop_helper_popen(helper: Any) -> None:
    """Forget ``helper._proc`` without subprocess's "still running" ResourceWarning.

    The helper processes outlive this one by design.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        helper._proc = None


class _HelperProcesses:
    """The helper objects of this process: reset in a forked child, detached at exit.

    A helper has ``_proc`` (its ``subprocess.Popen``) and ``_after_fork_in_child()``.
    """

    def __init__(self) -> None:
        self._helpers: weakref.WeakSet[Any] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        atexit.register(self._detach_all)

    def add(self, helper: Any) -> None:
        self._helpers.add(helper)

    def _after_fork_in_child(self) -> None:
        for helper in list(self._helpers):
            helper._after_fork_in_child()

    def _detach_all(self) -> None:
        for helper in list(self._helpers):
            drop_helper_popen(helper)


helper_processes = _HelperProcesses()


# How long a wait in the main thread may block before it lets signal handlers run.
_SIGNAL_SLICE = 0.25


def wait_interruptibly(wait: Callable[[float | None], Any], timeout: float | None) -> bool:
    """Call ``wait(t)`` until it returns true or ``timeout`` passes; return its last answer.

    ``wait`` is a blocking wait with a timeout (an Event's or Condition's
    ``wait``, or a check after a Thread's ``join``).  In the main thread it
    is called in slices of at most a quarter of a second: a signal (Ctrl-C,
    a Jupyter kernel's interrupt) that the OS delivered to another thread
    only runs its Python handler once the main thread wakes, and a lock
    wait with no timeout never does.  Elsewhere ``wait(timeout)`` is called once.
    """
    if threading.current_thread() is not threading.main_thread():
        return bool(wait(timeout))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            step = _SIGNAL_SLICE
        else:
            step = min(_SIGNAL_SLICE, deadline - time.monotonic())
            if step <= 0:
                return bool(wait(0))
        if wait(step):
            return True
