"""Launcher for the spawn start method (layer 3, POSIX).

The child is a new interpreter (``spawn.get_command_line``).  The parent
serializes the preparation data and the Process object with the context's
serializer, while marking itself as the spawning launcher so that file
descriptors inside the object (``reduction.DupFd``) are passed to the child.
"""

from __future__ import annotations

import io
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from . import popen_fork, reduction, spawn, util
from ._spawning import set_spawning_popen

__all__ = ["Popen"]


class _DupFd:
    """A file descriptor passed to the child at the same number."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class Popen(popen_fork.Popen):
    """A spawned child process, as seen by its parent."""

    method = "spawn"
    DupFd = _DupFd

    def __init__(self, process_obj: Any) -> None:
        self._fds: list[int] = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        """Pass ``fd`` to the child, where it keeps its number."""
        self._fds.append(fd)
        return fd

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        if self.returncode is None:
            # subprocess owns the child: let it reap, so that it never reaps
            # behind our back (and never loses the exit status).
            if flag == os.WNOHANG:
                self.returncode = self._proc.poll()
            else:
                self.returncode = self._proc.wait()
        return self.returncode

    def _launch(self, process_obj: Any) -> None:
        from . import resource_tracker

        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        prep_data = spawn.get_preparation_data(process_obj._name)
        serializer = reduction.get_serializer(_serializer_of(process_obj))
        fp = io.BytesIO()
        set_spawning_popen(self)
        try:
            serializer.dump(prep_data, fp)
            serializer.dump(process_obj, fp)
        finally:
            set_spawning_popen(None)

        parent_r = child_w = child_r = parent_w = None
        try:
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            # The child holds child_w open until it exits: parent_r (the
            # sentinel) reaches EOF exactly then.
            self._fds.extend([child_r, child_w])
            # cmd[0]: the interpreter, which get_command_line checked is set.
            self._proc = util.spawnv_passfds(cmd[0], cmd, self._fds)
            self.pid = self._proc.pid
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as f:
                f.write(fp.getbuffer())
        finally:
            fds_to_close = [fd for fd in (parent_r, parent_w) if fd is not None]
            self.finalizer = util.Finalize(self, util.close_fds, fds_to_close)
            for fd in (child_r, child_w):
                if fd is not None:
                    os.close(fd)


def _serializer_of(process_obj: Any) -> str | None:
    # The serializer of the context that owns this kind of Process.
    from . import context

    method = process_obj._start_method or context._default_context.get_start_method()
    return context._concrete_contexts[method]._serializer
