"""Consumers that test_queue_reader_death.py kills in the middle of a get()
(importable for spawn/forkserver)."""

from __future__ import annotations

import threading

from multiprocess import queues

# Where a consumer stops in the middle of reading a record (the parent then kills it):
STOPS = (
    "after-header",  # the header read, nothing of the payload
    "mid-payload",  # part of the payload read from the pipe
    "before-message",  # a memfd record read, its side-channel message not taken
    "before-map",  # its memfd received, not mapped
)


def _stop_here(reached):
    reached.set()
    threading.Event().wait()  # until killed


def get_and_stop(q, reached, where, partial=100_000):
    """``q.get()``, stopping for good at ``where`` (one of STOPS) after setting ``reached``."""
    reader_class = queues._RecordReader
    if where == "after-header":
        init = reader_class.__init__

        def init_and_stop_after_header(self, *args):
            init(self, *args)
            readinto = self._readinto

            def read_header(view):
                if readinto(view):
                    _stop_here(reached)

            self._readinto = read_header

        reader_class.__init__ = init_and_stop_after_header
    elif where == "mid-payload":
        read_into = reader_class._read_into

        def partial_read(self, view):
            if view.nbytes > partial:
                assert read_into(self, view[:partial])
                _stop_here(reached)
            return read_into(self, view)

        reader_class._read_into = partial_read
    elif where in ("before-message", "before-map"):
        receive = reader_class._receive_fds

        def stop_at_message(self, token, count):
            if where == "before-message":
                _stop_here(reached)
            fds = receive(self, token, count)
            _stop_here(reached)
            return fds

        reader_class._receive_fds = stop_at_message
    else:
        raise ValueError(f"unknown stop {where!r}")
    q.get()
    raise AssertionError(f"get() returned without stopping at {where}")


def item(i):
    """The race test's item ``i``: small mostly, some through the pipe in
    several reads, some in memfds; ``check`` tells a damaged one."""
    if i % 10 == 3:
        return (i, bytes([i % 251]) * 300_000)
    if i % 25 == 7:
        return (i, bytes([i % 251]) * (1 << 20))
    if i % 10 == 5:
        return (i, bytearray([i % 251]) * 200_000)  # out of band, in the pipe
    return (i, "x" * (i % 40))


def check(got):
    """Whether ``got`` is one of ``item``'s items, intact."""
    return type(got) is tuple and len(got) == 2 and type(got[0]) is int and got == item(got[0])


def consume(q, seen, errors):
    """Take items until None, counting each in ``seen`` (a shared int array)
    and each damaged one in ``errors[0]``."""
    while True:
        got = q.get(timeout=120)
        if got is None:
            return
        if check(got):
            seen[got[0]] += 1
        else:
            errors[0] += 1


def hold_read_lock_without_pid(q, holding):
    """Take the queue's read lock the way a consumer killed before recording
    its pid leaves it: held, with no owner."""
    q._rlock.acquire()
    _stop_here(holding)


def hold_guard_and_read_lock(q, holding):
    """Hold the recovery guard (as a consumer killed while it took a lock back
    leaves it) and the read lock."""
    q._guard.acquire()
    q._read_lock.acquire()
    _stop_here(holding)
