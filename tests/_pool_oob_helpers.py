"""Functions that pool workers run in the out-of-band tests (importable under spawn)."""

from __future__ import annotations

import os
import signal

from _fd_helpers import fd_count

from multiprocess.pool import _oob


def echo(*args, **kwds):
    """The one argument or keyword argument given."""
    (value,) = args or kwds.values()
    return value


def describe(x):
    """What a worker received: type, and for arrays their shape, writability and sum."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return ("ndarray", x.shape, bool(x.flags.writeable), float(x.sum()) if x.size else 0.0)
    return (type(x).__name__, len(x))


def _memfd_inode(address):
    """The inode of the pool's memfd mapped at ``address`` in this process, or None."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                return int(fields[4]) if "memfd:multiprocess-pool" in line else None
    return None


def where_is(a, i):
    """(pid, inode of the memfd behind ``a``, a[i]) for the shared-input tests."""
    return os.getpid(), _memfd_inode(a.ctypes.data), float(a[i])


def bump_first(a, _i):
    """Increment a[0] in this worker's copy; return (pid, value it had)."""
    before = float(a[0])
    a[0] += 1
    return os.getpid(), before


def total(a):
    return float(a.sum())


def open_fds():
    return fd_count()


def _die_on_first_fds(event):
    def hook(_fds):
        if event.is_set():
            return  # a replacement worker, or one that died already: work
        event.set()
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def init_die_before_mapping(event):
    """Initializer: the first worker to receive memfds dies before it maps them.

    Deterministic: the hook runs in the worker after the descriptors arrived
    and before anything maps them; the event makes it happen once.
    """
    _oob._on_fds_received = _die_on_first_fds(event)
