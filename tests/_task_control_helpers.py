"""Functions that pool workers run in the task control tests (importable under spawn)."""

from __future__ import annotations

import os
import signal
import threading

_leaked: list = []


def _log(log: str | None, x: object) -> None:
    """Append one line naming ``x`` to the file ``log`` (one write: whole lines)."""
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{x}\n".encode())
        finally:
            os.close(fd)


def hang_forever() -> None:
    """Block on an event that nothing ever sets: only a kill ends this."""
    threading.Event().wait()


def hang_at(x, target=3, log=None):
    """Return x squared, except for ``target``, which never returns."""
    _log(log, x)
    if x == target:
        hang_forever()
    return x * x


def hang_at_pair(x, y, target=3):
    """starmap's form of ``hang_at``: x + y, except for x == ``target``."""
    if x == target:
        hang_forever()
    return x + y


def hang(*args, **kwds):
    hang_forever()


def die_at(x, target=3, log=None):
    """Return x squared, except for ``target`` (or the items of a tuple of
    targets), where the worker kills itself (SIGKILL)."""
    _log(log, x)
    if x == target or (isinstance(target, tuple) and x in target):
        os.kill(os.getpid(), signal.SIGKILL)
        hang_forever()
    return x * x


def raise_at(x, target=3):
    if x == target:
        raise ValueError(f"item {x} raised on purpose")
    return x * x


def square(x):
    return x * x


def add(x, y):
    return x + y


def rss_of_self(_x=None):
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _touched(nbytes: int) -> bytearray:
    data = bytearray(nbytes)
    data[::4096] = b"\1" * len(range(0, nbytes, 4096))  # every page resident
    return data


def allocate_at(x, target, nbytes):
    """Return x squared, except for ``target``: allocate ``nbytes`` and hold them forever."""
    if x == target:
        data = _touched(nbytes)
        hang_forever()
        del data
    return x * x


def spike_at(x, target, nbytes, then_raise=False):
    """Return x squared, except for ``target``: touch ``nbytes`` and free them at
    once (a spike shorter than the pool's reads of its workers' memory), then
    return, or raise if ``then_raise``."""
    if x == target:
        del _touched(nbytes)[:]
        if then_raise:
            raise ValueError(f"item {x} raised after its spike")
    return x * x


def leak(x, nbytes):
    """Keep ``nbytes`` more in this worker (until it exits); return (x squared, pid)."""
    _leaked.append(_touched(nbytes))
    return x * x, os.getpid()
