"""The resource tracker: unlinks named resources that dead processes leaked (layer 4).

Named semaphores and shared memory segments outlive the processes that created
them: if a program is killed before it unlinks them, they stay until reboot.
The tracker is a small server process, started on first use, that keeps the
names the program registered and unlinks those still registered when the
program is gone.

How it knows: it reads one line per message from a pipe, and every process of
the program holds a copy of the pipe's write end (forked children inherit it,
spawned and forkserver children are passed it).  EOF on the pipe therefore
means that every process of the program has exited, and only then does the
tracker unlink anything: a resource that a live process still uses is never
touched.  The tracker ignores SIGINT and SIGTERM so that a ^C or a
``killall python`` aimed at the program does not defeat it.

Wire protocol, one ASCII-safe line of at most 512 bytes (writes to a pipe of at
most PIPE_BUF bytes are atomic, so concurrent writers never interleave)::

    REGISTER:<name>:<rtype>
    UNREGISTER:<name>:<rtype>
    PROBE:0:noop            (a liveness check; the write fails once it is dead)

Compatibility hooks: CPython's multiprocessing test suite reaches
``_resource_tracker._pid``, ``_resource_tracker._fd``, ``_check_alive``,
``_stop``, ``_exitcode`` and ``_CLEANUP_FUNCS`` (whose keys it iterates as the
resource types to test, so it holds exactly the stdlib's types).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import warnings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    import subprocess
    from typing import Callable

from . import spawn, util

__all__ = ["ensure_running", "register", "unregister"]

# Signals the tracker ignores; blocked while it starts so that it cannot die of
# one before it has installed its handlers.
_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Longest message: POSIX guarantees atomic pipe writes up to PIPE_BUF >= 512.
_MAX_MESSAGE = 512


def _cleanup_noop(name: str) -> None:
    raise RuntimeError("noop should never be registered or cleaned up")


# The resource types CPython's suite knows, and how each is released.
_CLEANUP_FUNCS: dict[str, Callable[[str], None]] = {"noop": _cleanup_noop}

if os.name == "posix":
    import _multiprocessing
    import _posixshmem

    # sem_unlink is missing where the build found no named semaphores: then
    # none can have been created, and there is nothing to clean up.
    if hasattr(_multiprocessing, "sem_unlink"):
        _CLEANUP_FUNCS["semaphore"] = _multiprocessing.sem_unlink
    _CLEANUP_FUNCS["shared_memory"] = _posixshmem.shm_unlink


def _remove_folder(name: str) -> None:
    import shutil  # in the tracker's process, at a cleanup (workers never need it)

    shutil.rmtree(name)


# Types of ours, kept out of _CLEANUP_FUNCS (the suite iterates over it and
# would try to create them): temporary folders, and 'dummy', which the suite
# of Python 3.13 registers to test the tracker's exit code (it leaks silently).
_EXTRA_CLEANUP_FUNCS: dict[str, Callable[[str], None]] = {
    "folder": _remove_folder,
    "dummy": lambda name: None,
}

_COMMANDS = ("REGISTER", "UNREGISTER", "PROBE")


def _cleanup_func(rtype: str) -> Callable[[str], None] | None:
    return _CLEANUP_FUNCS.get(rtype) or _EXTRA_CLEANUP_FUNCS.get(rtype)


def _encode_message(cmd: str, name: str, rtype: str) -> bytes:
    """Return the wire form of one message, or raise ValueError if it is invalid."""
    if cmd not in _COMMANDS:
        raise ValueError(f"unknown resource tracker command {cmd!r}")
    if _cleanup_func(rtype) is None:
        known = ", ".join(sorted(set(_CLEANUP_FUNCS) | set(_EXTRA_CLEANUP_FUNCS)))
        raise ValueError(f"unknown resource type {rtype!r} (known types: {known})")
    if not isinstance(name, str):
        raise TypeError(f"resource name must be a str, not {type(name).__name__}")
    if "\n" in name or "\0" in name:
        raise ValueError(f"resource name {name!r} contains a newline or NUL character")
    msg = f"{cmd}:{name}:{rtype}\n".encode("utf-8", "surrogateescape")
    if len(msg) > _MAX_MESSAGE:
        raise ValueError(
            f"resource name too long ({len(msg)} bytes with the message header; "
            f"at most {_MAX_MESSAGE} fit in one atomic pipe write)"
        )
    return msg


class ReentrantCallError(RuntimeError):
    """The tracker was called from inside itself (a finalizer or a signal handler)."""


class ResourceTracker:
    """The client side of a resource tracker process.

    One instance per process (``_resource_tracker``) is the tracker of the
    package; tests may make their own.  ``_fd`` is the write end of the pipe
    (inherited by forked children, passed to others); ``_pid`` is the tracker's
    pid in the process that started it and None elsewhere.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # How deep the current holder of _lock is inside our methods: a
        # garbage-collection finalizer or a signal handler may call back into
        # the tracker while the same thread is in the middle of a call.
        self._depth = 0
        self._fd: int | None = None
        self._pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._exitcode: int | None = None
        util.helper_processes.add(self)

    def _after_fork_in_child(self) -> None:
        # Another thread may have held the lock at fork time: it never releases
        # it in the child.  The state it was updating is as it was at the fork.
        self._lock = threading.RLock()
        self._depth = 0
        # The tracker is our parent's child: only the parent may reap it.
        util.drop_helper_popen(self)

    def _enter(self) -> bool:
        """Take the lock; return False if this call is nested in another one."""
        self._lock.acquire()
        self._depth += 1
        return self._depth == 1

    def _leave(self) -> None:
        self._depth -= 1
        self._lock.release()

    def getfd(self) -> int:
        """Return the pipe's write end (starting the tracker if needed), for a child."""
        self.ensure_running()
        assert self._fd is not None
        return self._fd

    def ensure_running(self) -> None:
        """Start the tracker process unless it is running; restart it if it died.

        Can be called from any process: a child normally reuses the tracker of
        the program (its fd is inherited or passed) and this does nothing.
        """
        outermost = self._enter()
        try:
            if not outermost:
                raise ReentrantCallError(
                    "reentrant call into the multiprocess resource tracker "
                    "(from a finalizer or a signal handler)"
                )
            self._ensure_running_locked()
        finally:
            self._leave()

    def _ensure_running_locked(self) -> None:
        if self._fd is not None:
            if self._check_alive():
                return
            self._forget_dead_tracker()
            warnings.warn(
                "resource_tracker: process died unexpectedly, relaunching.  "
                "Some resources might leak."
            )
        self._launch()

    def _forget_dead_tracker(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        proc, self._proc = self._proc, None
        # Reap it if it is gone (a no-op if somebody else already did); if it
        # still runs (our fd was closed under us), let subprocess reap it later.
        if proc is not None and proc.poll() is None:
            _unreaped.append(proc)
        self._pid = None
        self._exitcode = None

    def _launch(self) -> None:
        r, w = os.pipe()
        try:
            exe = spawn.get_executable()
            if exe is None:
                raise RuntimeError(
                    "cannot start the resource tracker: sys.executable is empty; "
                    "call multiprocess.set_executable()"
                )
            prog = f"from {__package__}.resource_tracker import main; main({r})"
            args = [exe, *spawn._interpreter_flags(), "-c", prog]
            # The tracker inherits the mask, ignores the signals, then unblocks.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _IGNORED_SIGNALS)
            try:
                proc = util.spawnv_passfds(exe, args, [r])
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._proc = proc
        self._pid = proc.pid
        self._exitcode = None
        # Last: a reentrant caller writes to _fd as soon as it is set.
        self._fd = w

    def _check_alive(self) -> bool:
        """Return True if the tracker still reads the pipe (it gets a probe)."""
        fd = self._fd
        if fd is None:
            return False
        try:
            os.write(fd, b"PROBE:0:noop\n")
        except OSError:
            return False
        return True

    def register(self, name: str, rtype: str) -> None:
        """Have the tracker unlink resource ``name`` of type ``rtype`` if it leaks."""
        self._send("REGISTER", name, rtype)

    def unregister(self, name: str, rtype: str) -> None:
        """Tell the tracker that ``name`` was released and must be forgotten."""
        self._send("UNREGISTER", name, rtype)

    def _send(self, cmd: str, name: str, rtype: str) -> None:
        msg = _encode_message(cmd, name, rtype)
        outermost = self._enter()
        try:
            if outermost:
                self._ensure_running_locked()
            elif self._fd is None:
                # Nested in a call of ours (from a finalizer or a signal
                # handler) that is starting the tracker: nowhere to write.
                warnings.warn(
                    f"resource_tracker called reentrantly while it was starting; "
                    f"the {rtype} object {name!r} might leak"
                )
                return
            # Nested or not, _fd is now a valid pipe: it is set last when the
            # tracker starts and reset before it is closed.
            nbytes = os.write(self._fd, msg)  # type: ignore[arg-type]
        finally:
            self._leave()
        if nbytes != len(msg):  # cannot happen for writes <= PIPE_BUF
            raise OSError(f"short write to the resource tracker: {nbytes} of {len(msg)} bytes")

    def _adopt_fd(self, fd: int) -> None:
        """Use ``fd``, passed by the parent, as the pipe to the program's tracker."""
        old, self._fd = self._fd, fd
        self._pid = None
        util.drop_helper_popen(self)
        if old is not None and old != fd:
            os.close(old)

    def _stop(self, timeout: float | None = None) -> None:
        """Close our end of the pipe and wait for the tracker (for tests).

        The tracker exits only once every process holding the pipe has closed
        it.  With ``timeout``, give up waiting after that long (the tracker is
        left to exit on its own).  Sets ``_exitcode``.
        """
        outermost = self._enter()
        try:
            if not outermost:
                return
            fd, self._fd = self._fd, None
            if fd is None:
                return
            os.close(fd)
            proc, self._proc = self._proc, None
            self._pid = None
            if proc is not None:
                import subprocess  # loaded already: it made proc (see util.spawnv_passfds)

                try:
                    self._exitcode = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._exitcode = None
                    _unreaped.append(proc)
        finally:
            self._leave()


# Trackers we stopped waiting for: kept so that subprocess can still reap them.
_unreaped: list = []


def _detach_at_exit() -> None:
    # Trackers we stopped waiting for outlive us by design: forget them
    # without subprocess's "still running" ResourceWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del _unreaped[:]


atexit.register(_detach_at_exit)


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd


def _stop(timeout: float | None = 30.0) -> None:
    """Stop the package's tracker if this process started it (for test suites)."""
    _resource_tracker._stop(timeout)


#
# The tracker process
#


def _redirect_to_devnull(fd: int, flags: int) -> None:
    null = os.open(os.devnull, flags)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def main(fd: int) -> None:
    """Run the tracker: read messages from ``fd`` until EOF, then clean up and exit.

    Exit status: 0 if nothing was left registered, 1 if something leaked, 2 if
    a leaked resource could not be released, 3 if a malformed message came.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _IGNORED_SIGNALS)
    # Keep stderr (for the warnings) but not the program's stdin and stdout:
    # whoever reads the program's output must not wait for us.
    try:
        _redirect_to_devnull(0, os.O_RDONLY)
        _redirect_to_devnull(1, os.O_WRONLY)
    except OSError:
        pass

    registered: dict[str, set[str]] = {}
    exit_code = 0
    try:
        with open(fd, "rb") as pipe:
            for line in pipe:
                try:
                    _handle(line, registered)
                except Exception as e:  # noqa: BLE001 - a bad message must not stop us
                    exit_code = 3
                    _report(f"resource_tracker: ignoring message {line!r}: {e}")
    finally:
        exit_code = _cleanup(registered, exit_code)
    sys.exit(exit_code)


def _handle(line: bytes, registered: dict[str, set[str]]) -> None:
    text = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
    cmd, _, rest = text.partition(":")
    name, _, rtype = rest.rpartition(":")
    if _cleanup_func(rtype) is None:
        raise ValueError(f"cannot track {name!r}: unknown resource type {rtype!r}")
    if cmd == "REGISTER":
        registered.setdefault(rtype, set()).add(name)
    elif cmd == "UNREGISTER":
        # Unregistering twice (or after a tracker restart) is harmless.
        registered.get(rtype, set()).discard(name)
    elif cmd != "PROBE":
        raise ValueError(f"unknown command {cmd!r}")


def _report(message: str) -> None:
    # Under -W error (passed on by the parent) a warning raises: the cleanup
    # matters more than the report.
    try:
        warnings.warn(message)
    except Exception:  # noqa: BLE001, S110
        pass


def _cleanup(registered: dict[str, set[str]], exit_code: int) -> int:
    """Release what is still registered (every client is gone); return the exit code."""
    order = [*_CLEANUP_FUNCS, *_EXTRA_CLEANUP_FUNCS]
    for rtype in sorted(registered, key=order.index):
        names = registered[rtype]
        if not names:
            continue
        if exit_code == 0:
            exit_code = 1
        if rtype != "dummy":
            _report(
                f"resource_tracker: There appear to be {len(names)} leaked {rtype} "
                f"objects to clean up at shutdown: {names}"
            )
        cleanup = _cleanup_func(rtype)
        for name in names:
            # The process that registered it died without unregistering it.
            try:
                cleanup(name)  # type: ignore[misc]
            except Exception as e:  # noqa: BLE001 - report it, release the others
                exit_code = 2
                _report(f"resource_tracker: {name!r}: {e}")
    return exit_code
