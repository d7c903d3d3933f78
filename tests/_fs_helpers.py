"""Functions that children run in the forkserver and resource tracker tests."""

from __future__ import annotations

import _multiprocessing
import _posixshmem
import os
import sys

import multiprocess as mp
from multiprocess import forkserver, resource_tracker

# Set when this module is imported: in a forkserver child it tells whether the
# module was preloaded by the server (then it holds the server's pid).
IMPORTED_IN_PID = os.getpid()


def exit_with(code):
    if not isinstance(code, int):
        _quiet()  # sys.exit("message") prints the message: not into a passing run
    sys.exit(code)


def raise_error():
    _quiet()  # the child prints the traceback: not into a passing run
    raise RuntimeError("boom in child")


def _quiet():
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this child's life


def wait_for_release(conn):
    """Block until the parent sends something (or closes its end)."""
    try:
        conn.recv()
    except EOFError:
        pass


def report_parent(conn):
    parent = mp.parent_process()
    conn.send(
        {
            "parent_pid": parent.pid if parent else None,
            "parent_name": parent.name if parent else None,
            "parent_alive": parent.is_alive() if parent else None,
            "inherited_fds": forkserver.get_inherited_fds(),
            "start_method": mp.get_start_method(),
        }
    )


def report_preloaded(conn):
    conn.send({"imported_in": IMPORTED_IN_PID, "me": os.getpid(), "ppid": os.getppid()})


def report_tracker(conn, parent_tracker_pid):
    tracker = resource_tracker._resource_tracker
    tracker.ensure_running()
    conn.send(
        {
            "pid": tracker._pid,
            "reused": tracker._pid in (None, parent_tracker_pid) and tracker._check_alive(),
        }
    )


def create_resources_and_wait(conn, shm_name, sem_name):
    """Create a shm segment and a named semaphore, register them, then block."""
    fd = _posixshmem.shm_open(shm_name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    resource_tracker.register(shm_name, "shared_memory")
    sem = _multiprocessing.SemLock(1, 1, 1, sem_name, False)  # kind=SEMAPHORE, unlink=False
    resource_tracker.register(sem_name, "semaphore")
    conn.send("created")
    conn.recv()  # never comes: the parent kills us
    del sem


def create_shm(name):
    os.close(_posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
