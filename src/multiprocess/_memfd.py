"""Large buffers through memfds: copy in, pass by descriptor, map out (layer 1, Linux).

A pipe moves about 1.5 GiB/s at best: the writer's copy into 4 KiB pipe
pages is the limit.  A payload copied once into a memfd (an anonymous
in-memory file) and passed by descriptor (``SCM_RIGHTS`` on a Unix socket)
is mapped by the receiver: one copy in all, where a pipe makes two.  Nothing
can leak: a memfd lives only as long as a descriptor or a map of it, and
descriptors in flight in a socket are freed with the socket.

Used by the queues (their side channel) and by whoever else sends large
buffers between processes.
"""

from __future__ import annotations

import array
import mmap
import os
import socket
import sys
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "HAVE_MEMFD",
    "IO_CHUNK",
    "MAP_MIN_SIZE",
    "allocate",
    "copy_to_memfd",
    "is_numpy",
    "map_memfd",
    "recv_fds",
]

HAVE_MEMFD = (
    sys.platform.startswith("linux")
    and hasattr(os, "memfd_create")
    and hasattr(socket, "SCM_RIGHTS")
    and hasattr(socket, "SOCK_SEQPACKET")
)
# Buffers at least this large are read into a memory map (see allocate).
MAP_MIN_SIZE = 1 << 20
_MAP_FLAGS: int | None = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if hasattr(mmap, "MAP_ANONYMOUS") else None
)
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
# Python 3.13's mmap can map a file without keeping a duplicate of its
# descriptor; before that, every live map holds one, so at most
# _MAX_LIVE_MAPS received buffers stay mapped (others are copied out).
_MAP_TRACKFD_ARG = sys.version_info >= (3, 13)
_MAX_LIVE_MAPS = 256
# Largest count for one read/write system call (macOS rejects more than INT_MAX).
IO_CHUNK = 1 << 30


def is_numpy(exporter: Any) -> bool:
    """Whether a buffer's exporter is a numpy array (its reconstructor takes any buffer)."""
    return type(exporter).__module__.partition(".")[0] == "numpy"


def allocate(size: int) -> Any:
    """A writable buffer of ``size`` bytes for an out-of-band buffer to be read into.

    Large ones are private anonymous memory maps: unlike ``bytearray(size)``
    they are not zero-filled first, so their pages are touched once, by the
    read; and on Linux they ask for transparent huge pages, which takes the
    page faults of the read from one per 4 KiB to one per 2 MiB (most of the
    cost of receiving a large array).
    """
    if size >= MAP_MIN_SIZE and _MAP_FLAGS is not None:
        try:
            buf = mmap.mmap(-1, size, flags=_MAP_FLAGS)
        except (OSError, ValueError):
            return bytearray(size)
        if _MADV_HUGEPAGE is not None:
            try:
                buf.madvise(_MADV_HUGEPAGE)
            except OSError:
                pass  # THP disabled or unsupported: small pages, still fine
        return buf
    return bytearray(size)


def recv_fds(sock: socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """One message of at most ``size`` bytes without waiting: its bytes and descriptors.

    (``socket.recv_fds`` ignores its flags before Python 3.12.)
    """
    fds = array.array("i")
    message, ancdata, _flags, _addr = sock.recvmsg(
        size,
        socket.CMSG_SPACE(max_fds * fds.itemsize),
        socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC,
    )
    for level, type_, data in ancdata:
        if level == socket.SOL_SOCKET and type_ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return message, list(fds)


def copy_to_memfd(view: memoryview, name: str = "multiprocess") -> int | None:
    """A memfd holding a copy of ``view``; None if none can be made (use a pipe then)."""
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        pos, size = 0, view.nbytes
        while pos < size:
            pos += os.write(fd, view[pos : pos + IO_CHUNK])
    except OSError:
        os.close(fd)
        return None  # ENOMEM, ENOSPC: the pipe needs no extra memory
    except BaseException:
        os.close(fd)
        raise
    return fd


_live_maps = 0


def _unmapped() -> None:
    global _live_maps
    _live_maps -= 1


def map_memfd(
    fd: int,
    size: int,
    error: type[OSError] = OSError,
    private: bool = False,
    populate: bool = False,
) -> Any:
    """The received memfd ``fd`` of ``size`` bytes, as a writable buffer (``fd`` stays open).

    Mapped where that costs no descriptor (Python 3.13) or few are mapped;
    otherwise copied into a private buffer.  A memfd of another size, or one
    that ends early, raises ``error``.  ``private``: a copy-on-write map
    (writes stay in this process, for a memfd that other processes map too).
    ``populate``: for a buffer about to be read whole, its pages are mapped
    at once (one system call instead of a page fault per 4 KiB).
    """
    global _live_maps
    if os.fstat(fd).st_size != size:
        raise error("memfd of the wrong size")
    flags = mmap.MAP_PRIVATE if private else mmap.MAP_SHARED
    if populate:
        flags |= _MAP_POPULATE
    if _MAP_TRACKFD_ARG:
        return mmap.mmap(fd, size, flags=flags, trackfd=False)  # type: ignore[call-arg]
    if _live_maps < _MAX_LIVE_MAPS:
        buf = mmap.mmap(fd, size, flags=flags)  # keeps a duplicate of fd while it lives
        _live_maps += 1
        weakref.finalize(buf, _unmapped)
        return buf
    buf = allocate(size)
    with memoryview(buf) as view:
        pos = 0
        while pos < size:
            n = os.preadv(fd, [view[pos : pos + IO_CHUNK]], pos)
            if n == 0:
                raise error("memfd shorter than its size")
            pos += n
    return buf
