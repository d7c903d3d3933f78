"""Functions that children run in the spare-memfd tests (importable under spawn)."""

from __future__ import annotations

import os
import signal
import threading

from _fd_helpers import fd_targets


def echo(x):
    return x


def die(_x):
    """Kill this worker, as the OOM killer would, with a task in hand."""
    os.kill(os.getpid(), signal.SIGKILL)


def length(x):
    return len(x)


def spares_here(_x):
    """How many spare memfds this worker holds, while it runs a task."""
    from multiprocess import _memfd

    return len(_memfd._spares)


def memfds_named(prefix):
    """How many of this process's descriptors are memfds whose name starts with ``prefix``."""
    return sum(target.startswith(f"/memfd:{prefix}") for _fd, target in fd_targets())


def report_spares(out):
    """Put this (child) process's spares and spare-test memfds on ``out``."""
    from multiprocess import _memfd

    out.put((len(_memfd._spares), memfds_named("spare-test")))


def put_all(q, items):
    for item in items:
        q.put(item)


def get_and_die_before_copying(q, reached):
    """Get a large bytes object; stop once its memfd is received, before it is copied out.

    The parent kills this process there: the memfd dies with it.
    """
    from multiprocess import queues

    def stuck(fd, size, error=OSError):
        reached.set()
        threading.Event().wait()

    queues.read_bytes = stuck
    q.get()


def put_bytes_and_die_before_memfds(q, data, reached):
    """Put a large bytes object (into a memfd a reader gave back, if one waits); stop
    just before its memfd is sent.  The parent kills this process there."""
    from multiprocess import queues

    def stuck(self, token, fds):
        reached.set()
        threading.Event().wait()

    queues._RecordWriter._send_fds = stuck
    q.put(data)
    threading.Event().wait()
