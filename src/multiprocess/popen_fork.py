"""Launcher for the fork start method (layer 3, POSIX).

The child is a copy of the parent made by ``os.fork()``; the Process object is
inherited, not serialized.  Two pipes link them: the parent holds the read end
of one as the child's *sentinel* (it reaches EOF when the child exits), the
child holds the read end of the other as the parent's sentinel.
"""

from __future__ import annotations

import atexit
import os
import signal
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from . import util
from ._forklock import FORK_LOCK
from ._posix import wait_readable

__all__ = ["Popen"]


class Popen:
    """A started child process, as seen by its parent."""

    method = "fork"

    def __init__(self, process_obj: Any) -> None:
        util._flush_std_streams()
        self.returncode: int | None = None
        self.finalizer: util.Finalize | None = None
        self._launch(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        """A forked child inherits every fd: nothing to duplicate."""
        return fd

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        """Return the exit code if the child has exited (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flag)
            except OSError:
                # Reaped by somebody else (e.g. a SIGCHLD handler): unknowable.
                return None
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to exit; return its exit code, or None on timeout."""
        if self.returncode is None:
            if timeout is None:
                return self.poll(0)
            deadline = time.monotonic() + timeout
            if not wait_readable([self.sentinel], timeout):
                return None
            # The sentinel closes as the child exits, a moment before it can be
            # reaped; but a child that closed its end itself runs on.  Never
            # block past the timeout: poll until the child is reaped or time is up.
            delay = 0.0005
            while self.poll(os.WNOHANG) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                time.sleep(min(delay, remaining))
                delay = min(2 * delay, 0.05)
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise

    def interrupt(self) -> None:
        """Send SIGINT to the child."""
        self._send_signal(signal.SIGINT)

    def terminate(self) -> None:
        """Send SIGTERM to the child."""
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the child."""
        self._send_signal(signal.SIGKILL)

    def _launch(self, process_obj: Any) -> None:
        code = 1
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.pid = FORK_LOCK.fork()
        if self.pid == 0:
            try:
                # The parent's atexit handlers are the parent's; those the child
                # registers run when it exits, as they do in a spawned or
                # forkserver child (and in CPython 3.13+; before it, a forked
                # child ran none, leaving through os._exit).
                atexit._clear()  # type: ignore[attr-defined]
                atexit.register(util._exit_function)
                os.close(parent_r)
                os.close(parent_w)
                code = process_obj._bootstrap(parent_sentinel=child_r)
            finally:
                try:
                    atexit._run_exitfuncs()  # type: ignore[attr-defined]
                    util._flush_std_streams()
                finally:
                    os._exit(code)
        else:
            os.close(child_w)
            os.close(child_r)
            self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
            self.sentinel = parent_r

    def close(self) -> None:
        """Release the pipes to the child."""
        if self.finalizer is not None:
            self.finalizer()
