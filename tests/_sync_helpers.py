"""Functions that child processes run in the synchronize and queue tests.

They live in an importable module so that spawn and forkserver children can
find them.
"""

from __future__ import annotations

import os
import threading

# -- locks and semaphores ----------------------------------------------------


def increment_file(lock, path, times):
    """Read-modify-write an integer in ``path`` ``times`` times under ``lock``."""
    for _ in range(times):
        with lock, open(path, "r+") as f:
            value = int(f.read() or 0)
            f.seek(0)
            f.write(str(value + 1))
            f.truncate()


def exclusive_section(lock, inside, violations, times):
    """Check that nobody else is inside the critical section while we are."""
    for _ in range(times):
        with lock:
            if not inside.acquire(False):
                violations.release()
            else:
                inside.release()


def release(sem, times=1):
    for _ in range(times):
        sem.release()


def try_acquire(lock, results):
    """Report whether ``lock`` is free (as seen from a child), and RLock release errors."""
    got = lock.acquire(False)
    if got:
        lock.release()
    results.put(got)


def hold_until(lock, holding, done):
    """Take ``lock``, say so, and keep it until ``done`` is set."""
    with lock:
        holding.set()
        done.wait(60)


# -- conditions and events -----------------------------------------------------


def cond_sleeper(cond, sleeping, woken, timeout=None):
    with cond:
        sleeping.release()
        result = cond.wait(timeout)
        woken.release()
    return result


def cond_count_up(cond, counter, times, ready):
    """Raise ``counter`` one by one, notifying after each step."""
    ready.wait(60)
    for _ in range(times):
        with cond:
            counter.release()
            cond.notify()


def set_event(event):
    event.set()


def wait_event_and_answer(event, answer, results):
    results.put(event.wait(60))
    answer.set()


def wait_event_with_timeout(event, timeout, results):
    results.put(event.wait(timeout))


# -- barriers -----------------------------------------------------------------


def barrier_wait(barrier, results):
    results.put(barrier.wait())


def barrier_wait_expect_broken(barrier, results, timeout=None):
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        results.put("broken")
    else:
        results.put("passed")


def barrier_passes(barrier, passes, results):
    for _ in range(passes):
        barrier.wait()
    results.put(os.getpid())


# -- queues -------------------------------------------------------------------


def make_adder(n):
    """A closure: pickle cannot send it by reference, dill sends it by value."""

    def add(x):
        return x + n

    return add


def put_all(q, items):
    for item in items:
        q.put(item)


def put_functions(q):
    q.put(lambda x: x * 2)
    q.put(make_adder(10))
    q.put([make_adder(i) for i in range(3)])


def apply_functions(inq, outq, count):
    """Get ``count`` (function, argument) pairs and send back the results."""
    for _ in range(count):
        func, arg = inq.get(timeout=60)
        outq.put(func(arg))


def put_and_report(q, obj, done):
    q.put(obj)
    done.set()


def get_forever(q, started):
    started.set()
    q.get()


def get_one(q, results):
    results.put(q.get(timeout=60))


def echo_until_none(inq, outq):
    for item in iter(inq.get, None):
        outq.put(item)


def joinable_worker(q, results):
    for item in iter(q.get, None):
        results.put(item * item)
        q.task_done()
    q.task_done()


def simple_put(sq, items):
    for item in items:
        sq.put(item)


def simple_echo(inq, outq):
    outq.put(inq.get())


class Unpicklable:
    """Neither pickle nor dill can serialize it."""

    def __reduce__(self):
        raise TypeError("Unpicklable objects cannot be serialized")


def simple_get_forever(sq, started):
    started.set()
    sq.get()


def simple_get_one(sq, results):
    results.put(sq.get())


def put_array_and_die_before_memfds(q, size, reached):
    """Put a numpy array whose buffer goes in a memfd; stop just before sending it.

    The record is in the pipe and the write lock is held: the parent kills
    this process there.
    """
    import numpy as np

    from multiprocess import queues

    def stuck(self, token, fds):
        reached.set()
        threading.Event().wait()

    queues._RecordWriter._send_fds = stuck
    q.put(np.ones(size // 8))
    threading.Event().wait()


def _no_memfds():
    """Make memfd_create fail in this process (as with no descriptors left).

    Large objects then take the pipe, as on systems without memfds.
    """
    import errno

    def fail(*args):
        raise OSError(errno.EMFILE, "Too many open files")

    os.memfd_create = fail


def put_all_without_memfds(q, items):
    _no_memfds()
    put_all(q, items)


def put_and_report_without_memfds(q, obj, done):
    _no_memfds()
    put_and_report(q, obj, done)


def notify_under_lock(cond, n):
    with cond:
        cond.notify(n)
