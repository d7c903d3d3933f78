"""Process objects and the identity of the running process (layer 3).

``BaseProcess`` has the API of ``threading.Thread``; how a child is started is
left to a launcher (``popen_fork``, ``popen_spawn_posix``, ``popen_forkserver``)
chosen by the process's context.

Per-process state (who we are, our parent, our children, the counter that names
new children) lives in one ``_ProcessState`` object, replaced in a child by
``_ProcessState.enter_child``.  ``_dangling`` and ``_cleanup`` are compatibility
hooks for CPython's multiprocessing test suite.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Callable

from . import util
from ._posix import wait_readable
from ._spawning import get_spawning_popen

__all__ = ["BaseProcess", "active_children", "current_process", "parent_process"]

try:
    ORIGINAL_DIR: str | None = os.path.abspath(os.getcwd())
except OSError:
    ORIGINAL_DIR = None


class AuthenticationString(bytes):
    """An authkey: bytes that refuse to be pickled except to start a child."""

    def __reduce__(self) -> Any:
        if get_spawning_popen() is None:
            raise TypeError(
                "Pickling an AuthenticationString object is disallowed for security reasons"
            )
        return AuthenticationString, (bytes(self),)


class _ProcessState:
    """Who this process is, who its parent is and which children it has started."""

    def __init__(self, current: BaseProcess) -> None:
        self.current = current
        self.parent: BaseProcess | None = None
        self.children: set[BaseProcess] = set()
        self.counter = itertools.count(1)

    def enter_child(self, me: BaseProcess, parent: BaseProcess | None) -> None:
        """Become the state of the child process ``me`` (called in the child)."""
        self.current = me
        self.parent = parent
        self.children = set()
        self.counter = itertools.count(1)

    def reap(self) -> None:
        """Forget children that have exited (they are joined by ``poll``)."""
        for p in list(self.children):
            popen = p._popen
            if popen is not None and popen.poll() is not None:
                self.children.discard(p)


def current_process() -> BaseProcess:
    """Return the Process object of the running process."""
    return _state.current


def parent_process() -> BaseProcess | None:
    """Return the Process object of the parent, or None in the main process."""
    return _state.parent


def active_children() -> list[BaseProcess]:
    """Return the live children of this process (joining those that have exited)."""
    _state.reap()
    return list(_state.children)


def _cleanup() -> None:
    """Reap children that have exited (compatibility hook for the test suite)."""
    _state.reap()


class BaseProcess:
    """A process of execution, with the API of ``threading.Thread``.

    Subclass and override ``run()``, or pass ``target``.  ``_Popen`` (the
    launcher) is supplied by the context's concrete subclass.
    """

    _start_method: str | None = None
    # Set in __init__ (and by the _MainProcess and _ParentProcess stand-ins).
    _identity: tuple[int, ...]
    _config: dict[str, Any]
    _parent_pid: int | None
    # Set by spawn's child bootstrap while it unpickles the process object.
    _inheriting: bool

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> Any:
        raise NotImplementedError

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if group is not None:
            raise ValueError("group argument must be None for now")
        count = next(_state.counter)
        self._identity = _state.current._identity + (count,)
        self._config = _state.current._config.copy()
        self._parent_pid = os.getpid()
        self._parent_name = _state.current.name
        self._popen: Any = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs else {}
        self._name = name or (type(self).__name__ + "-" + ":".join(str(i) for i in self._identity))
        if daemon is not None:
            self.daemon = daemon
        _dangling.add(self)

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    def run(self) -> None:
        """What the child runs: by default ``target(*args, **kwargs)``."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def start(self) -> None:
        """Start the child process; a Process can be started only once."""
        self._check_closed()
        if self._popen is not None:
            raise AssertionError("cannot start a process twice")
        if self._parent_pid != os.getpid():
            raise AssertionError("can only start a process object created by current process")
        if _state.current._config.get("daemon"):
            raise AssertionError("daemonic processes are not allowed to have children")
        _state.reap()
        self._popen = self._Popen(self)
        self._sentinel = self._popen.sentinel
        # The target and its arguments now live in the child; drop them here so
        # that they can be collected (as the stdlib does).
        del self._target, self._args, self._kwargs
        _state.children.add(self)

    def interrupt(self) -> None:
        """Send SIGINT to the child (new in CPython 3.14; here on every version).

        By default the child gets KeyboardInterrupt, which ends it with exit
        code 1 unless ``run()`` handles it; a child that restored the default
        SIGINT handler dies of the signal (exit code ``-SIGINT``).
        """
        self._check_closed()
        if self._popen is not None:
            self._popen.interrupt()

    def terminate(self) -> None:
        """Send SIGTERM to the child."""
        self._check_closed()
        if self._popen is not None:
            self._popen.terminate()

    def kill(self) -> None:
        """Send SIGKILL to the child."""
        self._check_closed()
        if self._popen is not None:
            self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the child exits, or until ``timeout`` seconds have passed."""
        self._check_closed()
        if self._parent_pid != os.getpid():
            raise AssertionError("can only join a child process")
        if self._popen is None:
            raise AssertionError("can only join a started process")
        res = self._popen.wait(timeout)
        if res is not None:
            _state.children.discard(self)

    def is_alive(self) -> bool:
        """True from ``start()`` until the child has exited."""
        self._check_closed()
        if self is _state.current:
            return True
        if self._parent_pid != os.getpid():
            raise AssertionError("can only test a child process")
        if self._popen is None:
            return False
        returncode = self._popen.poll()
        if returncode is None:
            return True
        _state.children.discard(self)
        return False

    def close(self) -> None:
        """Release the resources of a finished process; most methods then raise ValueError."""
        if self._popen is not None:
            if self._popen.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            self._popen.close()
            self._popen = None
            del self._sentinel
            _state.children.discard(self)
        self._closed = True

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        self._name = name

    @property
    def daemon(self) -> bool:
        """Whether the child is terminated (instead of joined) when its parent exits."""
        return self._config.get("daemon", False)

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        if self._popen is not None:
            raise AssertionError("process has already started")
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        return self._config["authkey"]

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = AuthenticationString(authkey)

    @property
    def exitcode(self) -> int | None:
        """None while running; the exit status, or minus the signal that killed it."""
        self._check_closed()
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def ident(self) -> int | None:
        """The process id (None before start)."""
        self._check_closed()
        if self is _state.current:
            return os.getpid()
        return self._popen and self._popen.pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes ready when the child exits."""
        self._check_closed()
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    def __repr__(self) -> str:
        exitcode = None
        if self is _state.current:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._popen is None:
            status = "initial"
        else:
            exitcode = self._popen.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._popen is not None:
            info.append(f"pid={self._popen.pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            info.append(f"exitcode={_exitcode_to_name.get(exitcode, exitcode)}")
        if self.daemon:
            info.append("daemon")
        return "<{}>".format(" ".join(info))

    def _bootstrap(self, parent_sentinel: int | None = None) -> int:
        """Run in the new child: set up process state, call ``run()``, join its threads.

        Returns the exit code.  The launcher then runs the atexit handlers, as
        a normal interpreter exit would (and CPython 3.13+ does): the child's
        own first, ``util._exit_function`` (finalizers, children) last.
        """
        try:
            if self._start_method is not None:
                from . import context

                context._force_start_method(self._start_method)
            _state.enter_child(
                self, _ParentProcess(self._parent_name, self._parent_pid, parent_sentinel)
            )
            util._close_stdin()
            set_native_id = getattr(threading.main_thread(), "_set_native_id", None)
            if set_native_id is not None:
                set_native_id()
            self._after_fork()
            self.run()
            exitcode = 0
        except SystemExit as e:
            if e.code is None:
                exitcode = 0
            elif isinstance(e.code, int):
                exitcode = e.code
            else:
                sys.stderr.write(str(e.code) + "\n")
                exitcode = 1
        except BaseException:  # noqa: BLE001 - whatever run() raises is reported, exit 1
            exitcode = 1
            import traceback

            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
        finally:
            # Join the non-daemon threads that run() left behind, as the
            # interpreter would at a normal exit (os._exit skips that).
            threading._shutdown()  # type: ignore[attr-defined]
            util.info("process exiting with exitcode %d", exitcode)
            util._flush_std_streams()
        return exitcode

    @staticmethod
    def _after_fork() -> None:
        util._reset_in_child()


class _MainProcess(BaseProcess):
    """The Process object of the main process (never started, always alive)."""

    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._config = {
            "authkey": AuthenticationString(os.urandom(32)),
            "semprefix": "/mp",
        }

    def close(self) -> None:
        pass


class _ParentProcess(BaseProcess):
    """The parent, seen from a child: alive until its sentinel reports EOF."""

    def __init__(self, name: str, pid: int | None, sentinel: int | None) -> None:
        self._identity = ()
        self._name = name
        self._pid = pid
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._sentinel = sentinel
        self._config = {}

    def is_alive(self) -> bool:
        if self._sentinel is None:
            return False
        return not wait_readable([self._sentinel], timeout=0)

    @property
    def ident(self) -> int | None:
        return self._pid

    pid = ident

    def join(self, timeout: float | None = None) -> None:
        if self._sentinel is not None:
            wait_readable([self._sentinel], timeout=timeout)


# Every Process object that exists (compatibility hook for the test suite).
_dangling: weakref.WeakSet[BaseProcess] = weakref.WeakSet()
_state = _ProcessState(_MainProcess())

_exitcode_to_name = {-sig.value: f"-{sig.name}" for sig in signal.Signals}
