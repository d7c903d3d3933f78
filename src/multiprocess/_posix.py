"""POSIX primitives shared by the launchers and the channels (layer 1)."""

from __future__ import annotations

import math
import os
import select
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["pid_alive", "wait_readable", "writev_all"]

_POLL_MAX_MS = 2**31 - 1

if hasattr(select, "poll"):
    # poll() needs no extra file descriptor (unlike epoll/kqueue) and has no
    # FD_SETSIZE limit (unlike select).

    def _ready_fds(fds: list[int], timeout: float | None) -> set:
        poller = select.poll()
        for fd in fds:
            # POLLHUP, POLLERR and POLLNVAL are always reported: a closed peer
            # or a bad descriptor counts as ready, and the read will tell.
            poller.register(fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                ms = None
            else:
                ms = min(_POLL_MAX_MS, max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            ready = poller.poll(ms)
            if ready:
                return {fd for fd, _events in ready}
            if deadline is not None and time.monotonic() >= deadline:
                return set()

else:  # pragma: no cover - every supported POSIX platform has poll()

    def _ready_fds(fds: list[int], timeout: float | None) -> set:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(fds, [], [], remaining)
            if ready:
                return set(ready)
            if deadline is not None and time.monotonic() >= deadline:
                return set()


def _fileno(obj: Any) -> int:
    if isinstance(obj, int):
        fd = obj
    else:
        fd = obj.fileno()
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


def wait_readable(objects: Sequence[Any], timeout: float | None = None) -> list[Any]:
    """Wait until some of ``objects`` (fds or objects with ``fileno()``) are readable.

    A closed peer or a bad descriptor counts as ready (the read will tell).
    ``timeout`` None waits forever; zero or negative does not wait.  Returns the
    ready objects in their original order ([] on timeout).  ``connection.wait``
    is this function.
    """
    pairs = [(obj, _fileno(obj)) for obj in objects]
    ready = _ready_fds(list({fd for _obj, fd in pairs}), timeout)
    return [obj for obj, fd in pairs if fd in ready]


# os.writev takes at most IOV_MAX (1024 on Linux, macOS) buffers, and a single
# call should not be asked for more than 1 GiB (some systems cap a write there).
_IOV_MAX = 512
_IO_CHUNK = 1 << 30


def first_bytes(views: list, limit: int = _IO_CHUNK) -> list:
    """The leading views of ``views``, cut to at most ``limit`` bytes and ``_IOV_MAX`` views."""
    out = []
    for view in views[:_IOV_MAX]:
        if limit <= 0:
            break
        out.append(view[:limit])
        limit -= view.nbytes
    return out


def advance(views: list, written: int) -> list:
    """Drop the first ``written`` bytes from the list of memoryviews ``views``, in place."""
    while written:
        first = views[0]
        if written >= first.nbytes:
            written -= first.nbytes
            views.pop(0)
        else:
            views[0] = first[written:]
            written = 0
    return views


def writev_all(fd: int, views: list) -> None:
    """Write every byte of the memoryviews ``views`` (format "B") to the blocking ``fd``."""
    views = [v for v in views if v.nbytes]
    while views:
        advance(views, os.writev(fd, first_bytes(views)))


def pid_alive(pid: int, zombie_is_dead: bool = True) -> bool:
    """False if process ``pid`` has exited.

    With ``zombie_is_dead`` (one more system call or three), a zombie counts
    as exited, on Linux: a parent that killed a child but has not reaped it
    yet must see it as gone.  A process of another user counts as alive.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and belongs to somebody else
        return True
    if not zombie_is_dead:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3] not in (b"Z", b"X")
