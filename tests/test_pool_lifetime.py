"""A pool nobody keeps a reference to: every call works, and the pool then goes away.

``list(ThreadPool(2).imap(abs, range(4)))`` used to hang: the last result
dropped the pool on the thread that set it, whose finalizer then waited for
that very result's lock.  A collected pool's finalizer now only asks the pool
to stop (on any thread, at any point); pending results keep their pool alive,
so they complete.  Each call is tried on a pool that only the call's
temporaries refer to, under every start method and on a ThreadPool, and then
the pool must be gone and its workers stopped.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import warnings
import weakref

import _pool_helpers as h
import pytest

from multiprocess import pool as mpool
from multiprocess.connection import wait

pytestmark = [
    pytest.mark.timeout(120),
    # Each pool here is dropped while running, as in the scripts this is about.
    pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning"),
]

WAIT = 60
XS = list(range(10))
SQUARES = [x * x for x in XS]


def _via_callback(start):
    """Start an async call with ``callback=`` and return what the callback got."""
    got: queue.SimpleQueue = queue.SimpleQueue()
    result = start(got.put)
    value = got.get(timeout=WAIT)
    # The callback runs before the result lets go of its pool: wait for that.
    result.wait(WAIT)
    return value


def _via_error_callback(make):
    got: queue.SimpleQueue = queue.SimpleQueue()
    result = make().apply_async(h.raise_value_error, (7,), error_callback=got.put)
    value = str(got.get(timeout=WAIT))
    result.wait(WAIT)
    return value


# name -> (the call, made on ``make()``, a new pool nobody else refers to; what it returns)
CALLS = {
    "map": (lambda make: make().map(h.square, XS), SQUARES),
    "map_chunks": (lambda make: make().map(h.square, XS, chunksize=3), SQUARES),
    "map_async": (lambda make: make().map_async(h.square, XS).get(WAIT), SQUARES),
    "map_async_callback": (
        lambda make: _via_callback(lambda cb: make().map_async(h.square, XS, callback=cb)),
        SQUARES,
    ),
    "starmap": (lambda make: make().starmap(h.add, zip(XS, XS)), [2 * x for x in XS]),
    "starmap_async": (
        lambda make: make().starmap_async(h.add, zip(XS, XS)).get(WAIT),
        [2 * x for x in XS],
    ),
    "imap": (lambda make: list(make().imap(h.square, XS)), SQUARES),
    "imap_chunks": (lambda make: list(make().imap(h.square, XS, chunksize=3)), SQUARES),
    "imap_unordered": (lambda make: sorted(make().imap_unordered(h.square, XS)), SQUARES),
    "imap_unordered_chunks": (
        lambda make: sorted(make().imap_unordered(h.square, XS, chunksize=4)),
        SQUARES,
    ),
    "apply": (lambda make: make().apply(h.add, (2, 3)), 5),
    "apply_async": (lambda make: make().apply_async(h.add, (2, 3)).get(WAIT), 5),
    "apply_async_callback": (
        lambda make: _via_callback(lambda cb: make().apply_async(h.add, (2, 3), callback=cb)),
        5,
    ),
    "apply_async_error_callback": (_via_error_callback, "bad value 7"),
}


class _Pools:
    """Makes pools and remembers, without keeping them alive, how to see them stopped."""

    def __init__(self, factory):
        self.factory = factory
        self.made: list[tuple[weakref.ref, list]] = []

    def __call__(self):
        pool = self.factory()
        self.made.append((weakref.ref(pool), list(pool._pool)))
        return pool  # the caller's temporary is then the only reference

    def check_all_gone(self):
        """Every pool made is collected (after gc) and its workers have stopped."""
        gc.collect()
        for ref, workers in self.made:
            assert ref() is None, "an unreferenced pool is still alive"
            for worker in workers:
                _wait_stopped(worker)
        self.made.clear()


def _wait_stopped(worker):
    if isinstance(worker, threading.Thread):
        worker.join(WAIT)
        assert not worker.is_alive()
        return
    # A copy of the sentinel: the pool may close the Process while we wait.
    try:
        sentinel = os.dup(worker.sentinel)
    except (OSError, ValueError):
        return  # already joined and closed by the pool
    try:
        assert wait([sentinel], WAIT) == [sentinel], "a collected pool's worker still runs"
    finally:
        os.close(sentinel)


def _run_calls(make, call, rounds):
    func, expected = CALLS[call]
    for _ in range(rounds):
        assert func(make) == expected
    make.check_all_gone()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_unreferenced_threadpool(call):
    # The last result drops the pool on the worker thread that set it: looped,
    # so that the pool is also dropped on the caller's thread at times.
    _run_calls(_Pools(lambda: mpool.ThreadPool(2)), call, rounds=40)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_unreferenced_pool(ctx, call):
    rounds = 4 if ctx.get_start_method() == "fork" else 1
    _run_calls(_Pools(lambda: ctx.Pool(2)), call, rounds=rounds)


class _Cycle:
    """Keeps a pool in a reference cycle: only the garbage collector frees it."""

    def __init__(self, pool):
        self.pool = pool
        self.me = self


def _gc_stress(make, rounds):
    """Pools in cycles, with the collector running often, on every thread."""
    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)
    try:
        for i in range(rounds):
            if i % 3 == 0:
                assert list(_Cycle(make()).pool.imap(h.square, XS)) == SQUARES
            elif i % 3 == 1:
                assert _Cycle(make()).pool.map_async(h.square, XS).get(WAIT) == SQUARES
            else:
                assert (
                    _via_callback(
                        lambda cb: _Cycle(make()).pool.apply_async(h.add, (1, 2), callback=cb)
                    )
                    == 3
                )
    finally:
        gc.set_threshold(*old)
    make.check_all_gone()


def test_threadpools_in_cycles_collected_on_any_thread():
    _gc_stress(_Pools(lambda: mpool.ThreadPool(2)), rounds=150)


def test_pools_in_cycles_collected_on_any_thread(ctx):
    rounds = 12 if ctx.get_start_method() == "fork" else 3
    _gc_stress(_Pools(lambda: ctx.Pool(2)), rounds=rounds)


def test_collected_from_a_callback_on_the_result_thread(ctx):
    # gc.collect() in a callback runs the finalizer of the pool on the very
    # thread that delivers results, between two results of another call.
    make = _Pools(lambda: ctx.Pool(2))
    collected: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(3):
        assert list(_Cycle(make()).pool.imap(h.square, XS)) == SQUARES
        result = make().map_async(h.square, XS, callback=lambda _r: collected.put(gc.collect()))
        assert isinstance(collected.get(timeout=WAIT), int)
        result.wait(WAIT)
        result = None
    make.check_all_gone()


def _pending_results_keep_their_pool_alive(make, event):
    # As in the standard library since 3.8: a pending result refers to its
    # pool, so collecting garbage does not stop the pool under it.
    results = [make().apply_async(h.wait_for_event, (i,)) for i in range(2)]
    iterator = make().imap(h.wait_for_event, range(3))
    gc.collect()
    assert all(ref() is not None for ref, _workers in make.made)
    event.set()
    assert [r.get(WAIT) for r in results] == [0, 1]
    assert list(iterator) == [0, 1, 2]
    results = iterator = None
    make.check_all_gone()


def test_pending_results_keep_their_pool_alive(ctx):
    event = ctx.Event()
    make = _Pools(lambda: ctx.Pool(2, initializer=h.init_with_event, initargs=(event,)))
    _pending_results_keep_their_pool_alive(make, event)


def test_pending_results_keep_their_threadpool_alive():
    event = threading.Event()
    make = _Pools(lambda: mpool.ThreadPool(2, initializer=h.init_with_event, initargs=(event,)))
    _pending_results_keep_their_pool_alive(make, event)


def test_collected_running_pool_warns_like_the_stdlib(ctx):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ctx.Pool(1).apply_async(h.square, (3,)).get(WAIT) == 9
        gc.collect()
    assert any(
        issubclass(w.category, ResourceWarning) and "unclosed running" in str(w.message)
        for w in caught
    )
