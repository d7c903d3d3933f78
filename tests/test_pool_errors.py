"""What the pool raises, seen by code written for the stdlib, loky or concurrent.futures.

Its errors are caught by the ``except`` clauses such code already has; bad arguments
fail at once with a clear message; a timeout says what timed out; workers that crash
on purpose in these tests print no crash dump.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import BrokenExecutor
from concurrent.futures.process import BrokenProcessPool

import _pool_helpers as h
import pytest

import multiprocess
from multiprocess import ProcessError
from multiprocess import pool as mpool

pytestmark = pytest.mark.timeout(120)


def run_script(code, *args, env=None):
    """Run ``code`` in a fresh interpreter (tests/ is on its PYTHONPATH, see conftest)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env=env,
    )


#
# Item: errors that existing except clauses catch
#


def test_a_killed_worker_is_caught_as_runtime_error(ctx):
    with ctx.Pool(1) as p:
        try:
            p.apply_async(h.die_now, ("sigkill",)).get(60)
        except RuntimeError as e:  # what code written for other pools catches
            caught = e
        assert isinstance(caught, mpool.TerminatedWorkerError)
        assert isinstance(caught, ProcessError)
        assert caught.exitcode == -9
        # The worker was replaced: nothing else broke.
        assert p.map(h.square, range(4)) == [0, 1, 4, 9]


def test_terminate_fails_pending_tasks_with_a_runtime_error(ctx):
    event = ctx.Event()
    p = ctx.Pool(1, initializer=h.init_with_event, initargs=(event,))
    running = p.apply_async(h.signal_then_sleep, (60,))
    queued = p.map_async(h.square, range(3))
    assert event.wait(60)  # the first task runs
    p.terminate()
    p.join()
    for result in (running, queued):
        try:
            result.get(30)
        except RuntimeError as e:
            caught = e
        assert isinstance(caught, mpool.PoolTerminatedError)
        assert isinstance(caught, ProcessError)


def test_a_broken_pool_is_caught_as_broken_process_pool(ctx):
    p = ctx.Pool(2, initializer=h.init_raises)
    try:
        try:
            p.map(h.square, range(4))
        except BrokenProcessPool as e:  # what concurrent.futures and loky users catch
            caught = e
        assert isinstance(caught, mpool.BrokenPoolError)
        assert isinstance(caught, (ProcessError, BrokenExecutor, RuntimeError))
        assert isinstance(caught.__cause__, ValueError)
        # Later calls fail at once, with the same catchable type.
        with pytest.raises(BrokenProcessPool):
            p.apply_async(h.square, (1,))
    finally:
        p.terminate()
        p.join()


def test_threadpool_errors_are_caught_the_same_way():
    tp = mpool.ThreadPool(1, initializer=h.init_raises)
    try:
        with pytest.raises(BrokenProcessPool):
            tp.map(h.square, range(2))
    finally:
        tp.terminate()
        tp.join()


BROKEN_PROCESS_POOL_SCRIPT = """
import sys

import multiprocess as mp
from multiprocess import pool as mpool

# Importing the package leaves the stdlib's multiprocessing alone, and with it
# concurrent.futures.process, which imports it; and concurrent.futures too,
# which a short script's pool does not need.
assert not [m for m in sys.modules if m.split(".")[0] == "multiprocessing"], sys.modules
assert "concurrent.futures" not in sys.modules
assert issubclass(mpool.BrokenPoolError, RuntimeError)
from concurrent.futures import BrokenExecutor

import _pool_helpers as h

if __name__ == "__main__":
    # Imported after multiprocess, as most programs do.
    from concurrent.futures.process import BrokenProcessPool

    p = mp.get_context(sys.argv[1]).Pool(1, initializer=h.init_raises)
    try:
        p.map(h.square, [1])
    except BrokenProcessPool as e:
        assert isinstance(e, BrokenExecutor) and issubclass(mpool.BrokenPoolError, BrokenExecutor)
        print("caught", type(e).__name__)
    finally:
        p.terminate()
        p.join()
"""


def test_broken_process_pool_imported_after_the_package(start_method):
    out = run_script(BROKEN_PROCESS_POOL_SCRIPT, start_method)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["caught", "BrokenPoolError"]


#
# Item: a timeout says what timed out
#


def test_get_timeout_says_what_timed_out_and_after_how_long(ctx):
    event = ctx.Event()
    with ctx.Pool(1, initializer=h.init_with_event, initargs=(event,)) as p:
        applied = p.apply_async(h.wait_for_event, (5,))
        mapped = p.map_async(h.wait_for_event, range(6), chunksize=2)
        ordered = p.imap(h.wait_for_event, range(2))
        unordered = p.imap_unordered(h.wait_for_event, range(2))
        faces = [
            (
                applied.get,
                r"the result of apply_async\(wait_for_event\) was not ready after 0.05 s",
            ),
            (mapped.get, r"map_async\(wait_for_event\) was not ready after 0.05 s \(3 of 3 chunks"),
            (ordered.next, r"the next result of imap\(wait_for_event\) was not ready after 0.05 s"),
            (unordered.next, r"imap_unordered\(wait_for_event\) was not ready after 0.05 s"),
        ]
        for get, message in faces:
            # The stdlib's type: multiprocessing.TimeoutError, ours here.
            with pytest.raises(multiprocess.TimeoutError, match=message):
                get(timeout=0.05)
        event.set()
        assert applied.get(60) == 5
        assert mapped.get(60) == list(range(6))
        assert list(ordered) == [0, 1]
        assert sorted(unordered) == [0, 1]


#
# Item: bad arguments fail at once
#

MAPS = ["map", "map_async", "starmap", "starmap_async", "imap", "imap_unordered"]


def _call(pool, name, chunksize, items):
    star = name.startswith("starmap")
    func = h.add if star else h.square
    iterable = ((x, x) for x in items) if star else items
    result = getattr(pool, name)(func, iterable, chunksize)
    return result.get(60) if name.endswith("_async") else list(result)


@pytest.mark.parametrize("name", MAPS)
def test_every_map_rejects_a_bad_chunksize(ctx, name):
    with ctx.Pool(1) as p:
        for bad in (0, -1) if name.startswith("imap") else (-1,):
            items = iter(range(3))
            with pytest.raises(ValueError, match=f"Chunksize must be 1\\+, not {bad}"):
                _call(p, name, bad, items)
            assert next(items) == 0  # refused before reading the inputs
        for bad in (1.5, "2"):
            with pytest.raises(TypeError, match="chunksize must be an int"):
                _call(p, name, bad, iter(range(3)))
        # Nothing broke, and what an int is stays accepted.
        assert sorted(_call(p, name, True, iter(range(3)))) in ([0, 1, 4], [0, 2, 4])


@pytest.mark.parametrize("name", [n for n in MAPS if not n.startswith("imap")])
def test_map_with_chunksize_0_chooses_one_and_returns_the_results(ctx, name):
    # The stdlib's map, map_async, starmap and starmap_async take 0 without an
    # error and return a list of Nones; code written for it passes 0 (pathos'
    # own tests compare such results between its pools): the real results.
    with ctx.Pool(2) as p:
        expected = (
            [2 * x for x in range(20)] if name.startswith("star") else [x * x for x in range(20)]
        )
        assert _call(p, name, 0, range(20)) == expected


def test_pool_size_is_checked_at_once(ctx):
    check_pool_size(ctx.Pool)


def test_threadpool_size_is_checked_at_once():
    check_pool_size(mpool.ThreadPool)


def check_pool_size(make):
    for bad in (1.5, 2.0, "2"):
        with pytest.raises(TypeError, match="processes must be an int or None"):
            make(bad)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"Number of processes must be at least 1, not {bad}"):
            make(bad)
    with make(True) as p:  # an int, as the stdlib accepts
        assert p.map(h.square, range(3)) == [0, 1, 4]


def test_maxtasksperchild_is_checked_as_the_stdlib_does(ctx):
    for bad in (0, -1, 0.5, "12", False):
        with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
            ctx.Pool(1, maxtasksperchild=bad)
    with ctx.Pool(1, maxtasksperchild=True) as p:  # one task per worker, as the stdlib
        pids = {p.apply(h.pid_of) for _ in range(3)}
        assert len(pids) == 3


#
# Item: workers that crash on purpose print no crash dump
#

CRASH_SCRIPT = """
import sys

import multiprocess as mp
from multiprocess import pool as mpool
import _pool_helpers as h

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(1) as p:
        try:
            p.apply(h.die_now, ("segfault",))
        except mpool.TerminatedWorkerError as e:
            print("died", e.exitcode)
    p = ctx.Pool(1, initializer=h.init_segfaults)
    try:
        p.map(h.square, [1])
    except mpool.BrokenPoolError:
        print("broken")
    finally:
        p.terminate()
        p.join()
"""


def test_helpers_that_segfault_on_purpose_print_no_crash_dump(start_method):
    # Every child has faulthandler on (pytest's plugin turns it on here, and
    # forked workers inherit it; the variable reaches all of them).
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    out = run_script(CRASH_SCRIPT, start_method, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["died", "-11", "broken"]
    assert "Fatal Python error" not in out.stderr
