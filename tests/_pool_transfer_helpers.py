"""Pool workers that stop half-way through a large transfer (importable under spawn).

A worker started with one of the ``init_stall_*`` initializers counts the
bytes it reads (or writes) on its pipes; once it has moved ``at`` bytes it
records its pid, sets the event and blocks for good, in the middle of the
frame: the test then kills it, or terminates the pool, at a known point
instead of after a sleep.  Only the first worker to get there stalls: the
others, and its replacement, find the event set and work normally.
"""

from __future__ import annotations

import os
import threading

# Larger than any pipe buffer (64 KiB on Linux, 16 KiB on macOS) by far.
BIG = 32 << 20
# Where a worker stops: well inside a BIG frame, beyond a pipe buffer.
STALL_AT = 1 << 20
# Bytes per read or write once patched, so that progress is counted as it goes.
_STEP = 1 << 16


def _stall(pid_value, event):
    if event.is_set():
        return  # another worker stalled first: this one works normally
    pid_value.value = os.getpid()
    event.set()
    threading.Event().wait()  # until killed


def init_stall_reading(event, pid_value, at=STALL_AT):
    """Initializer: after reading ``at`` bytes of tasks, stop reading for good."""
    if event.is_set():
        return  # a replacement: work normally
    real_read, real_readv = os.read, os.readv
    seen = [0]

    def count(n):
        seen[0] += n
        if seen[0] >= at:
            _stall(pid_value, event)

    def read(fd, n):
        data = real_read(fd, min(n, _STEP))
        count(len(data))
        return data

    def readv(fd, buffers):
        n = real_readv(fd, [memoryview(b).cast("B")[:_STEP] for b in buffers[:1]])
        count(n)
        return n

    os.read, os.readv = read, readv


def init_stall_writing(event, pid_value, at=STALL_AT):
    """Initializer: after writing ``at`` bytes of results, stop writing for good."""
    if event.is_set():
        return
    real_write, real_writev = os.write, os.writev
    seen = [0]

    def count(n):
        if seen[0] + n >= at:
            _stall(pid_value, event)
        seen[0] += n

    def write(fd, data):
        data = memoryview(data).cast("B")[:_STEP]
        count(len(data))
        return real_write(fd, data)

    def writev(fd, buffers):
        first = memoryview(buffers[0]).cast("B")[:_STEP]
        count(len(first))
        return real_writev(fd, [first])

    os.write, os.writev = write, writev


def big_result(n):
    """A result of ``n`` bytes."""
    return b"r" * n
