"""Functions that child processes run in test_dead_peers.py (importable for spawn/forkserver)."""

from __future__ import annotations

import threading

from multiprocess import managers


def hold_and_hang(lock, holding, times=1):
    """Acquire ``lock`` ``times`` times through its proxy, say so, then hang until killed."""
    for _ in range(times):
        lock.acquire()
    holding.set()
    threading.Event().wait()


def release_times(sem, times):
    for _ in range(times):
        sem.release()


def acquire_times(sem, times, done):
    for _ in range(times):
        sem.acquire()
    done.put(times)


# -- a manager whose handshakes have short deadlines (for the stalled-peer tests)


class QuickServer(managers.Server):
    handshake_timeout = 0.5
    max_unauthenticated = 4


class QuickManager(managers.SyncManager):
    _Server = QuickServer


def cond_wait_and_report(cond, waiting, results, timeout=None):
    """Wait on a manager Condition; ``waiting`` is set under its lock, just before."""
    with cond:
        waiting.set()
        results.put(cond.wait(timeout))


def acquire_and_exit(lock):
    """Acquire ``lock`` through its proxy and exit normally, still holding it."""
    lock.acquire()
