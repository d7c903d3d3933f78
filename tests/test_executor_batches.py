"""The executor hands calls to the engine in rounds: several calls of one function
make one job of several tasks, and on the coordinator's thread small ones skip the
feeder.  Each call still runs, fails and dies alone: a worker that dies fails only
the call it was running, the others of its job run (on a replacement worker).

Every test runs under fork, spawn and forkserver (the ``ctx`` fixture).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import _futures_helpers as fh
import _pool_helpers as h
import pytest

from multiprocess.futures import ProcessPoolExecutor, WorkerDiedError

pytestmark = pytest.mark.timeout(120)


def record_jobs(executor):
    """Record the number of calls in each job the executor gives its engine."""
    coordinator = executor._coordinator
    sizes = []
    submit = coordinator.submit

    def recording(job):
        sizes.append(len(job._payloads))
        submit(job)

    coordinator.submit = recording
    return sizes


def test_calls_queued_together_go_as_one_job_and_a_death_fails_only_its_call(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        sizes = record_jobs(executor)
        # Hold the calls in the executor's queue, then let the window take them all.
        with executor._lock:
            executor._window = 0
        futures = [executor.submit(h.die_at, i, 17, "exit") for i in range(40)]
        assert sizes == []
        with executor._lock:
            executor._window = executor._max_window
        executor._pump()
        assert sizes == [40]
        error = futures[17].exception(timeout=60)
        assert isinstance(error, WorkerDiedError)
        assert error.exitcode == 1
        assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 17] == [
            i * i for i in range(40) if i != 17
        ]


def test_a_run_of_one_function_is_one_job_and_other_functions_their_own(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        sizes = record_jobs(executor)
        with executor._lock:
            executor._window = 0
        calls = [(h.square, 1), (h.square, 2), (h.add, 1, 2), (h.square, 3)]
        futures = [executor.submit(*call) for call in calls]
        futures.append(executor.schedule(h.square, (4,), task_timeout=60))
        with executor._lock:
            executor._window = executor._max_window
        executor._pump()
        # A call with its own task_timeout is a job of its own too.
        assert sizes == [2, 1, 1, 1]
        assert [f.result(timeout=60) for f in futures] == [1, 4, 3, 9, 16]


def test_calls_handed_over_on_the_coordinator_thread_skip_the_feeder_and_die_alone(ctx):
    started, release = ctx.Event(), ctx.Event()
    with ProcessPoolExecutor(
        1, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    ) as executor:
        coordinator = executor._coordinator
        taken = []
        take_small = coordinator._take_small

        def recording(job):
            taken.append(take_small(job))
            return taken[-1]

        coordinator._take_small = recording
        first = executor.submit(fh.block_or_die, 1, False)
        second = executor.submit(fh.block_or_die, 2, False)  # in flight: its pickle is kept
        assert started.wait(60)
        later = []
        threads = []

        def submit_more(_future):
            # A done callback runs on the coordinator's thread.
            threads.append(threading.current_thread().name)
            later.extend(executor.submit(fh.block_or_die, x, x == 11) for x in (10, 11, 12))

        first.add_done_callback(submit_more)
        # The feeder must be done with the first two calls: a call on the
        # coordinator thread never overtakes calls the feeder still holds.
        wait_until_feeder_idle(coordinator)
        release.set()
        assert first.result(timeout=60) == 1
        assert second.result(timeout=60) == 2
        assert threads == ["PoolCoordinator"]
        assert taken[0] is True  # the call after the first went straight to the worker
        assert later[0].result(timeout=60) == 10
        error = later[1].exception(timeout=60)
        assert isinstance(error, WorkerDiedError)
        assert error.exitcode == 3
        assert later[2].result(timeout=60) == 12


def wait_until_feeder_idle(coordinator, timeout=60):
    """Wait until the coordinator's feeder has made every task and waits for calls."""
    deadline = time.monotonic() + timeout
    with coordinator._cond:
        # The feeder takes no wake-up for this: look again every few ms.
        while coordinator._jobs or not coordinator._feeder_waiting:
            left = deadline - time.monotonic()
            assert left > 0, "the feeder never became idle"
            coordinator._cond.wait(min(left, 0.005))


@pytest.mark.parametrize("how", ["a call dies", "a worker is killed"])
def test_submits_from_several_threads_with_a_death_in_the_middle(ctx, how):
    n_threads, per_thread, doomed = 4, 150, 75
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        barrier = threading.Barrier(n_threads + 1)
        futures = [[] for _ in range(n_threads)]
        halfway = threading.Event()

        def submitter(t):
            barrier.wait(60)
            for i in range(per_thread):
                x = t * per_thread + i
                target = x if how == "a call dies" and t == 0 and i == doomed else -1
                futures[t].append(executor.submit(h.die_at, x, target, "exit"))
                if t == 0 and i == doomed:
                    halfway.set()

        threads = [threading.Thread(target=submitter, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        barrier.wait(60)
        assert halfway.wait(60)
        if how == "a worker is killed":
            futures[0][0].result(timeout=60)  # a worker runs (spawn: started on demand)
            pid = next(pid for pid in executor._processes if pid is not None)
            os.kill(pid, signal.SIGKILL)
        for thread in threads:
            thread.join(60)
        failed = []
        for t in range(n_threads):
            for i, future in enumerate(futures[t]):
                x = t * per_thread + i
                error = future.exception(timeout=60)
                if error is None:
                    assert future.result() == x * x
                else:
                    assert isinstance(error, WorkerDiedError), error
                    failed.append((x, error.exitcode))
        if how == "a call dies":
            assert failed == [(doomed, 1)]
        else:
            # Only the call the worker was running, if any, fails.
            assert len(failed) <= 1
            assert all(code == -signal.SIGKILL for _x, code in failed)
        # The executor goes on with a replacement worker.
        assert executor.submit(h.square, 7).result(timeout=60) == 49
