"""``get_reusable_executor``: one process-wide executor, reused, grown or replaced."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import threading

import _futures_helpers as fh
import _reusable_helpers as rh
import pytest

import multiprocess
from multiprocess import _reusable
from multiprocess.futures import ProcessPoolExecutor, get_reusable_executor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_executor_left():
    """Each test starts without a reusable executor and leaves none running."""
    _drop()
    yield
    _drop()


def _drop():
    with _reusable._lock:
        executor, _reusable._current = _reusable._current, None
    if executor is not None:
        executor.kill_workers()
        executor.shutdown()


def test_the_same_settings_give_the_same_executor(ctx):
    first = get_reusable_executor(2, mp_context=ctx)
    assert isinstance(first, ProcessPoolExecutor)
    assert get_reusable_executor(2, mp_context=ctx) is first
    # Lambdas cross as with any executor of ours.
    assert list(first.map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]
    assert get_reusable_executor(2, mp_context=ctx) is first


def test_initargs_equal_by_value_reuse_the_executor(ctx):
    first = get_reusable_executor(1, mp_context=ctx, initializer=rh.remember, initargs=("a",))
    again = get_reusable_executor(1, mp_context=ctx, initializer=rh.remember, initargs=["a"])
    assert again is first
    assert again.submit(rh.recalled, 0).result(60) == "a"
    other = get_reusable_executor(1, mp_context=ctx, initializer=rh.remember, initargs=("b",))
    assert other is not first
    assert other.submit(rh.recalled, 0).result(60) == "b"
    assert first._shutdown_called


def test_more_workers_grow_it_in_place(ctx):
    barrier = ctx.Barrier(3)
    settings = {"mp_context": ctx, "initializer": fh.init_barrier, "initargs": (barrier,)}
    small = get_reusable_executor(2, **settings)
    assert small.submit(rh.pid).result(60) > 0
    big = get_reusable_executor(3, **settings)
    assert big is small
    assert big._max_workers == 3
    # Three calls that can only return once all three run at the same time.
    calls = [big.submit(fh.meet, i) for i in range(3)]
    assert [c.result(60) for c in calls] == [0, 1, 2]


def test_fewer_workers_replace_it_and_the_old_calls_still_finish(ctx):
    started, release = ctx.Event(), ctx.Event()
    old = get_reusable_executor(
        2, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    )
    running = old.submit(fh.block, "old call")
    assert started.wait(60)
    new = get_reusable_executor(
        1, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    )
    assert new is not old
    assert old._shutdown_called
    with pytest.raises(RuntimeError, match="after shutdown"):
        old.submit(rh.pid)
    release.set()
    assert running.result(60) == "old call"
    assert new.submit(fh.block, "new call").result(60) == "new call"


def test_kill_workers_stops_the_old_executors_calls(ctx):
    started, release = ctx.Event(), ctx.Event()  # release: never set
    old = get_reusable_executor(
        2, mp_context=ctx, initializer=fh.init_events, initargs=(started, release)
    )
    running = old.submit(fh.block, 1)
    assert started.wait(60)
    new = get_reusable_executor(2, mp_context=ctx, kill_workers=True)
    assert new is not old
    with pytest.raises(concurrent.futures.process.BrokenProcessPool):
        running.result(60)
    assert new.submit(pow, 2, 5).result(60) == 32


def test_a_shut_down_executor_is_replaced(ctx):
    first = get_reusable_executor(1, mp_context=ctx)
    first.shutdown()
    second = get_reusable_executor(1, mp_context=ctx)
    assert second is not first
    assert second.submit(pow, 2, 3).result(60) == 8


def test_a_broken_executor_is_replaced(ctx):
    broken = get_reusable_executor(1, mp_context=ctx, initializer=rh.fail_init)
    with pytest.raises(concurrent.futures.process.BrokenProcessPool):
        broken.submit(pow, 2, 3).result(60)
    again = get_reusable_executor(1, mp_context=ctx, initializer=rh.fail_init)
    assert again is not broken
    fixed = get_reusable_executor(1, mp_context=ctx)
    assert fixed.submit(pow, 2, 3).result(60) == 8


def test_another_start_method_or_serializer_gets_another_executor(ctx):
    first = get_reusable_executor(1, mp_context=ctx)
    other_method = "spawn" if ctx.get_start_method() != "spawn" else "forkserver"
    second = get_reusable_executor(1, mp_context=multiprocess.get_context(other_method))
    assert second is not first
    pickling = multiprocess.get_context(ctx.get_start_method())
    pickling = type(pickling)()  # a context object of its own, serializer set below
    pickling.set_serializer("pickle")
    third = get_reusable_executor(1, mp_context=pickling)
    assert third is not second
    assert third.submit(pow, 3, 3).result(60) == 27


def test_a_child_gets_an_executor_of_its_own(ctx):
    parent = get_reusable_executor(1, mp_context=ctx)
    assert parent.submit(pow, 2, 2).result(60) == 4
    queue = ctx.Queue()
    p = ctx.Process(target=rh.reusable_in_child, args=(queue, ctx.get_start_method()))
    p.start()
    _child_id, same, value = queue.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    assert same and value == 9
    assert get_reusable_executor(1, mp_context=ctx) is parent


def test_threads_asking_at_once_share_one_executor(ctx):
    # Each round: 8 threads ask for it at the same moment; all get one object.
    for _ in range(20):
        _drop()
        got: list = []
        barrier = threading.Barrier(8)

        def ask(got=got, barrier=barrier):
            barrier.wait(30)
            got.append(get_reusable_executor(1, mp_context=ctx))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(got) == 8
        assert all(e is got[0] for e in got)
    assert got[0].submit(pow, 2, 4).result(60) == 16


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_workers": 0}, ValueError, "greater than 0"),
        ({"max_workers": "2"}, TypeError, "max_workers must be an int"),
        ({"max_workers": 1, "initializer": 3}, TypeError, "initializer must be a callable"),
        ({"max_workers": 1, "max_tasks_per_child": 0}, ValueError, ">= 1"),
    ],
)
def test_bad_arguments_raise_and_leave_the_executor_alone(ctx, kwargs, error, match):
    first = get_reusable_executor(1, mp_context=ctx)
    with pytest.raises(error, match=match):
        get_reusable_executor(mp_context=ctx, **kwargs)
    assert get_reusable_executor(1, mp_context=ctx) is first
    assert first.submit(pow, 5, 2).result(60) == 25


def test_task_limits_are_settings_of_the_executor(ctx):
    import _task_control_helpers as tch

    import multiprocess as mp

    timed = get_reusable_executor(1, mp_context=ctx, task_timeout=60)
    assert get_reusable_executor(1, mp_context=ctx, task_timeout=60) is timed
    short = get_reusable_executor(1, mp_context=ctx, task_timeout=0.5)
    assert short is not timed
    with pytest.raises(mp.TaskTimeoutError):
        short.submit(tch.hang).result(60)
    assert short.submit(pow, 2, 2).result(60) == 4
    with pytest.raises(ValueError):
        get_reusable_executor(1, mp_context=ctx, memory_limit="lots")
