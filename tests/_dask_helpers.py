"""Functions that Dask workers run by reference, for tests/test_dask.py."""

from __future__ import annotations

import os
import signal
import threading

_inits: list[str] = []


def square(x):
    return x * x


def add(a, b):
    return a + b


def invert(x):
    return 1 / x


def pid_of(_x=None):
    return os.getpid()


def kill_on(x, victim):
    """SIGKILL this worker's process on item ``victim``."""
    if x == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def first_byte_or_kill(data, victim):
    """SIGKILL this worker if ``data`` starts with byte ``victim``; else its first byte and length."""
    if data[0] == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return data[0], len(data)


def kill_once(x, victim, marker):
    """SIGKILL this worker on item ``victim`` the first time only (``marker``: a path)."""
    if x == victim:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return x
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def record_init(token):
    _inits.append(token)


def init_count(token):
    return os.getpid(), _inits.count(token)


def failing_init():
    raise ValueError("initializer failed on purpose")


def blocked(seconds):
    """Runs past a short task_timeout (the subject of the test, not a synchronization)."""
    threading.Event().wait(seconds)
    return seconds


class Big:
    """A callable holding a large payload: its identity shows how often a worker loaded it."""

    def __init__(self, size):
        self.payload = bytes(size)

    def __call__(self, x):
        return os.getpid(), id(self), len(self.payload) + x
