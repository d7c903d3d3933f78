"""Large buffers through memfds: copy in, pass by descriptor, map out (layer 1, Linux).

A pipe moves about 1.5 GiB/s at best: the writer's copy into 4 KiB pipe
pages is the limit.  A payload copied once into a memfd (an anonymous
in-memory file) and passed by descriptor (``SCM_RIGHTS`` on a Unix socket)
is mapped by the receiver: one copy in all, where a pipe makes two.  Nothing
can leak: a memfd lives only as long as a descriptor or a map of it, and
descriptors in flight in a socket are freed with the socket.

Used by the queues (their side channel) and by whoever else sends large
buffers between processes.

Spare memfds.  Writing into a fresh memfd costs about twice writing into
one whose pages exist (the kernel allocates, and later frees, every page);
and a receiver that copies a memfd out (``read_bytes``) is done with it.  So
a receiver that is the memfd's only holder (its sender closed its descriptor
and never sends it again) may keep it as a *spare* (``keep_spare``), which
this process's next ``copy_to_memfd`` rewrites in place.  Spares are this
process's alone: a forked child closes its copies at once (it must never
write into a file its parent also writes into), and at most
``MAX_SPARE_BYTES`` of them are kept (``drop_spares`` frees them).
"""

from __future__ import annotations

import _thread
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
    "drop_spares",
    "is_numpy",
    "keep_spare",
    "map_memfd",
    "read_bytearray",
    "read_bytes",
    "recv_fds",
    "take_spare",
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
# Spare memfds kept by this process (see the module docstring): at most this
# many bytes in all, and this many descriptors.
MAX_SPARE_BYTES = 256 << 20
MAX_SPARES = 32


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


def copy_to_memfd(
    view: memoryview, name: str = "multiprocess", spare: int | None = None
) -> int | None:
    """A memfd holding a copy of ``view``; None if none can be made (use a pipe then).

    Rewrites ``spare`` (a memfd this process alone holds, now owned by this
    call) or one of this process's spares if there is one; else makes one.
    """
    size = view.nbytes
    if spare is None:
        spare = take_spare(size)
    if spare is not None:
        try:
            # Its pages exist: rewritten in place (only a size change frees or adds some).
            os.ftruncate(spare, size)
            _write_all(spare, view)
        except OSError:
            os.close(spare)
        except BaseException:
            os.close(spare)
            raise
        else:
            return spare
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        _write_all(fd, view)
    except OSError:
        os.close(fd)
        return None  # ENOMEM, ENOSPC: the pipe needs no extra memory
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, view: memoryview) -> None:
    pos, size = 0, view.nbytes
    while pos < size:
        pos += os.pwrite(fd, view[pos : pos + IO_CHUNK], pos)


def _read_into(fd: int, view: memoryview, error: type[OSError]) -> None:
    """Fill ``view`` with the start of the memfd ``fd`` (kernel copies); ``error`` if it ends early."""
    pos, size = 0, view.nbytes
    while pos < size:
        n = os.preadv(fd, [view[pos : pos + IO_CHUNK]], pos)
        if n == 0:
            raise error("memfd shorter than its size")
        pos += n


def read_bytes(fd: int, size: int, error: type[OSError] = OSError) -> bytes:
    """The ``size`` bytes of the received memfd ``fd``, as a new ``bytes`` object.

    One copy, by the kernel, straight into the object: no map, so no page
    fault on the memfd's pages, and nothing of the memfd stays referenced
    (it can be kept as a spare).  A memfd of another size raises ``error``.
    """
    if os.fstat(fd).st_size != size:
        raise error("memfd of the wrong size")
    if size >= _HUGE_READ_MIN_SIZE:
        data = _read_huge(fd, size, error)
        if data is not None:
            return data
    if size <= IO_CHUNK:
        data = os.pread(fd, size, 0)
        if len(data) != size:
            raise error("memfd shorter than its size")
        return data
    with mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _MAP_POPULATE) as buf:
        return bytes(buf)  # larger than one read: copied out of a map


# Bytes objects at least this large are read with transparent huge pages.
_HUGE_READ_MIN_SIZE = 4 << 20
_HUGE_PAGE = 1 << 21
_huge_tools: Any = None  # (PyBytes_FromStringAndSize, madvise, c_char, c_char_p, c_void_p) or False


def _read_huge(fd: int, size: int, error: type[OSError]) -> bytes | None:
    """The memfd's bytes read into a new bytes object that asked for huge pages; None if
    that cannot be done here (no ctypes, no libc, not CPython, THP off).

    A fresh large bytes object is fresh memory (malloc maps it): the read's
    copy faults in its pages one per 4 KiB, and those faults (zeroing each
    page) cost more than the copy itself.  Asked for (``MADV_HUGEPAGE``), the
    kernel faults in 2 MiB at a time: a 64 MiB object is read in about half
    the time.  The object is filled as C code fills one it just made (the C
    API's documented way: ``PyBytes_FromStringAndSize(NULL, size)``), before
    anything else can see it.
    """
    global _huge_tools
    if _huge_tools is None:
        _huge_tools = _load_huge_tools()
    if not _huge_tools:
        return None
    new_bytes, madvise, c_char, c_char_p, c_void_p = _huge_tools
    data = new_bytes(None, size)
    address = c_void_p.from_buffer(c_char_p(data)).value
    start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    end = (address + size) & ~(_HUGE_PAGE - 1)
    if end > start:
        madvise(start, end - start, _MADV_HUGEPAGE)  # a failure only costs speed
    target = (c_char * size).from_address(address)
    with memoryview(target).cast("B") as view:
        _read_into(fd, view, error)
    return data


def _load_huge_tools() -> Any:
    if _MADV_HUGEPAGE is None or sys.implementation.name != "cpython":
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[never]" in f.read():
                return False
        import ctypes
    except (OSError, ImportError):
        return False
    try:
        new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
        new_bytes.restype = ctypes.py_object
        new_bytes.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.restype = ctypes.c_int
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (AttributeError, OSError):
        return False
    return new_bytes, madvise, ctypes.c_char, ctypes.c_char_p, ctypes.c_void_p


def read_bytearray(fd: int, size: int, error: type[OSError] = OSError) -> bytearray:
    """The ``size`` bytes of the received memfd ``fd``, as a new ``bytearray``."""
    if os.fstat(fd).st_size != size:
        raise error("memfd of the wrong size")
    out = bytearray(size)
    with memoryview(out) as view:
        _read_into(fd, view, error)
    return out


# (size, fd) of this process's spare memfds, and their total size.
_spares: list[tuple[int, int]] = []
_spare_bytes = 0
_spare_lock = _thread.allocate_lock()


def keep_spare(fd: int, size: int, max_count: int = MAX_SPARES) -> None:
    """Keep ``fd`` (a memfd of ``size`` bytes that no other process holds) as a spare.

    Takes ownership of ``fd``: it is closed if the spares are full (or this
    process already keeps ``max_count``).
    """
    global _spare_bytes
    with _spare_lock:
        if len(_spares) < min(max_count, MAX_SPARES) and _spare_bytes + size <= MAX_SPARE_BYTES:
            _spares.append((size, fd))
            _spare_bytes += size
            return
    os.close(fd)


def take_spare(size: int) -> int | None:
    """A spare for ``size`` bytes (the smallest that holds them, else the largest), or None.

    The caller owns it: it rewrites it (``copy_to_memfd``), or gives it to
    another process that will be its only holder.
    """
    global _spare_bytes
    if not _spares:
        return None
    with _spare_lock:
        if not _spares:
            return None
        fits = [i for i, (have, _fd) in enumerate(_spares) if have >= size]
        if fits:
            best = min(fits, key=lambda i: _spares[i][0])
        else:
            best = max(range(len(_spares)), key=lambda i: _spares[i][0])
        have, fd = _spares.pop(best)
        _spare_bytes -= have
        return fd


def drop_spares() -> None:
    """Close this process's spare memfds (their memory is freed)."""
    global _spare_bytes
    with _spare_lock:
        fds = [fd for _size, fd in _spares]
        _spares.clear()
        _spare_bytes = 0
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _forget_spares_in_child() -> None:
    # The parent keeps writing into its spares: the child must not.
    global _spare_lock
    _spare_lock = _thread.allocate_lock()  # a thread of the parent may have held it
    drop_spares()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_spares_in_child)


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
        _read_into(fd, view, error)
    return buf
