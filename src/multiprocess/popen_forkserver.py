"""Launcher for the forkserver start method (layer 3, POSIX).

The child is forked by the fork server (``forkserver``), a clean process
started on first use.  The parent serializes the preparation data and the
Process object as the spawn launcher does, hands them to the new child through
a pipe, and learns the child's pid and exit code from the server over the
status pipe, which is the child's sentinel.  File descriptors inside the
Process object (``reduction.DupFd``) travel to the server with the request and
reach the child as ``forkserver.get_inherited_fds()``.
"""

from __future__ import annotations

import io
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from . import forkserver, popen_fork, reduction, spawn, util
from ._posix import wait_readable
from ._spawning import set_spawning_popen
from .popen_spawn_posix import _serializer_of

__all__ = ["Popen"]

# What poll() reports when the server could not tell the exit code (it died).
_UNKNOWN_EXITCODE = 255


class _DupFd:
    """A file descriptor passed to the child, known there by its index."""

    def __init__(self, ind: int) -> None:
        self.ind = ind

    def detach(self) -> int:
        fds = forkserver.get_inherited_fds()
        if fds is None:
            raise RuntimeError("DupFd.detach() called outside a forkserver child")
        return fds[self.ind]


class Popen(popen_fork.Popen):
    """A child forked by the fork server, as seen by its parent."""

    method = "forkserver"
    DupFd = _DupFd

    def __init__(self, process_obj: Any) -> None:
        self._fds: list[int] = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        """Pass ``fd`` to the child; return its index in the child's inherited fds."""
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        serializer = reduction.get_serializer(_serializer_of(process_obj))
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            serializer.dump(prep_data, buf)
            serializer.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)

        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        # A copy of the data pipe's write end stays open until we are done with
        # the child: its EOF tells the child that its parent is gone.
        parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        try:
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = forkserver.read_signed(self.sentinel)
        except (OSError, EOFError) as e:
            self.finalizer()
            raise OSError(
                f"the fork server did not start the process ({e}); "
                "it may have been killed or failed to fork"
            ) from e

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        """Return the exit code if the child has exited, else None (never blocks with WNOHANG)."""
        if self.returncode is None:
            timeout = 0 if flag == os.WNOHANG else None
            if not wait_readable([self.sentinel], timeout):
                return None
            try:
                self.returncode = forkserver.read_signed(self.sentinel)
            except (OSError, EOFError):
                # The server died before it could report the exit code.
                self.returncode = _UNKNOWN_EXITCODE
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        # The child is not ours to reap: once it has exited its pid may already
        # belong to another process, so do not signal a child known to be gone.
        if self.poll() is None:
            super()._send_signal(sig)
