"""multiprocess.dask: the Pool and the executor on real Dask clusters on loopback.

Two module-scoped clusters, each with 2 worker processes of 1 thread: a
``distributed.LocalCluster(processes=True)``, and a scheduler plus two
workers started as separate processes with the ``dask scheduler`` and
``dask worker --nanny`` commands.  The cluster tests are parametrized over
the two kinds instead of the ``ctx`` fixture: start methods do not apply to
Dask's workers (Dask starts them; our code only ships bytes to them).  Both
schedulers run with ``allowed-failures`` 0, as the pool's own LocalCluster
does, so that a task whose worker died fails at once.  Functions the workers
run by reference live in ``_dask_helpers``; lambdas and ``__main__`` classes
come from a script run in a subprocess (``_dask_main_script``).
"""

from __future__ import annotations

import asyncio
import copyreg
import functools
import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

if importlib.util.find_spec("distributed") is None:
    pytest.skip(
        "Dask's distributed is not installed (pip install 'multiprocess[dask]')",
        allow_module_level=True,
    )

import _dask_helpers as h

from multiprocess import TaskTimeoutError
from multiprocess.dask import Pool, ProcessPoolExecutor, SchedulerUnreachableError
from multiprocess.futures import WorkerDiedError
from multiprocess.pool import BrokenPoolError, TerminatedWorkerError

pytestmark = pytest.mark.timeout(120)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module", autouse=True)
def _distributed_imported_here():
    """Import distributed for this module only, and undo what importing it did to copyreg.

    Importing it registers tblib's reducers in copyreg for every exception class
    (SystemExit(3) then unpickles with code None), and starts machinery of its
    own: done here, not at collection, so that the tests of other modules run
    in the interpreter as it was.
    """
    saved = dict(copyreg.dispatch_table)
    import distributed  # noqa: F401

    yield
    copyreg.dispatch_table.clear()
    copyreg.dispatch_table.update(saved)


@pytest.fixture(scope="module")
def local_cluster(_distributed_imported_here):
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        scheduler_kwargs={"allowed_failures": 0, "dashboard": False},
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _dask_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "dask")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "dask"]


def _drain(stream, wanted: str, found: dict, seen: threading.Event) -> None:
    """Read a process's log to its end (a full pipe would block it); note the ``wanted`` line."""
    for line in iter(stream.readline, ""):
        if wanted in line and not seen.is_set():
            found["line"] = line
            seen.set()
    seen.set()  # EOF: the process ended (the fixture then fails with its log)


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory, _distributed_imported_here):
    import distributed

    folder = tmp_path_factory.mktemp("dask-cli")
    scheduler_file = str(folder / "scheduler.json")
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    dask = _dask_command()
    procs = []

    def launch(args: list[str], wanted: str) -> str:
        p = subprocess.Popen(
            dask + args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        procs.append(p)
        found: dict = {}
        seen = threading.Event()
        threading.Thread(target=_drain, args=(p.stderr, wanted, found, seen), daemon=True).start()
        assert seen.wait(60) and "line" in found, f"{' '.join(args)} did not start"
        return found["line"]

    try:
        line = launch(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                scheduler_file,
            ],
            "Scheduler at:",
        )
        address = line.split("Scheduler at:")[1].strip()
        for _ in range(2):
            launch(
                [
                    "worker",
                    "--scheduler-file",
                    scheduler_file,
                    "--nthreads",
                    "1",
                    "--nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                "Registered to:",
            )
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module", params=["local", "cli"])
def address(request):
    """The scheduler address of a running 2-worker cluster of each kind."""
    return request.getfixturevalue(f"{request.param}_cluster")


def _two_workers(address: str) -> None:
    """Wait until both workers are up (a nanny restarts one killed by an earlier test)."""
    import distributed

    with distributed.Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)


# -- every Pool call ----------------------------------------------------------------


def test_every_pool_call(address):
    with Pool(address=address) as pool:
        assert pool.apply(h.add, (1, 2)) == 3
        got = threading.Event()
        seen = []
        r = pool.apply_async(h.square, (7,), callback=lambda v: (seen.append(v), got.set()))
        assert r.get(60) == 49
        assert got.wait(60) and seen == [49]
        assert pool.map(h.square, range(10)) == [x * x for x in range(10)]
        assert pool.map(h.square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.map(h.square, []) == []
        done = threading.Event()
        m = pool.map_async(h.square, range(5), callback=lambda _v: done.set())
        assert m.get(60) == [0, 1, 4, 9, 16] and done.wait(60)
        assert list(pool.imap(h.square, range(6))) == [0, 1, 4, 9, 16, 25]
        assert list(pool.imap(h.square, iter(range(7)), chunksize=3)) == [x * x for x in range(7)]
        assert sorted(pool.imap_unordered(h.square, range(6), chunksize=2)) == [0, 1, 4, 9, 16, 25]
        assert pool.starmap(h.add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.starmap_async(h.add, [(5, 6)]).get(60) == [11]
        counts = []
        assert pool.map(
            h.square, range(8), chunksize=2, progress=lambda d, t: counts.append(d)
        ) == [x * x for x in range(8)]
        assert counts and counts[-1] == 8

        async def awaited():
            return await pool.apply_async(h.add, (2, 3)), await pool.map_async(h.square, [4])

        assert asyncio.run(awaited()) == (5, [16])
        failed = threading.Event()
        errors = []
        pool.apply_async(h.invert, (0,), error_callback=lambda e: (errors.append(e), failed.set()))
        assert failed.wait(60) and isinstance(errors[0], ZeroDivisionError)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(h.square, (1,))


def test_close_join(address):
    pool = Pool(address=address)
    r = pool.map_async(h.square, range(20), chunksize=4)
    pool.close()
    pool.join()
    assert r.get(0) == [x * x for x in range(20)]


def test_an_error_names_its_item_and_carries_the_workers_traceback(address):
    with Pool(address=address) as pool:
        with pytest.raises(ZeroDivisionError) as info:
            pool.map(h.invert, [1, 2, 0, 4], chunksize=2)
        assert "item 2 of map" in "".join(getattr(info.value, "__notes__", [str(info.value)]))
        assert "invert" in str(info.value.__cause__)
        assert pool.apply(h.square, (3,)) == 9  # the pool goes on


def test_executor(address):
    with ProcessPoolExecutor(address=address) as ex:
        assert ex.submit(h.add, 1, 2).result(60) == 3
        assert list(ex.map(h.square, range(7), chunksize=3)) == [x * x for x in range(7)]
        assert list(ex.map(h.add, [1, 2], [10, 20])) == [11, 22]
        with pytest.raises(ZeroDivisionError):
            ex.submit(h.invert, 0).result(60)
        assert list(ex.map(h.square, range(4), buffersize=2)) == [0, 1, 4, 9]
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(h.square, 1)


def test_lambdas_and_main_classes_on_workers_that_never_saw_main(address):
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_dask_main_script.py"), address],
        check=False,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines == {
        "map": "[10, 11, 12, 13]",
        "class": "[1, 2, 3]",
        "closure": "16",
        "starmap": "-2",
        "submit": "5",
        "exmap": "[10, 11, 12]",
    }


# -- faults -------------------------------------------------------------------------


def test_a_worker_killed_during_a_map_fails_its_item_alone(address):
    _two_workers(address)
    with Pool(address=address) as pool:
        # Two chunks, one per worker: the one holding item 3 kills its worker.
        # Its items then run again one by one: 2 returns, 3 kills a worker again.
        it = pool.imap(functools.partial(h.kill_on, victim=3), range(4), chunksize=2)
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        with pytest.raises(
            TerminatedWorkerError,
            match=r"Dask worker tcp://127\.0\.0\.1:\d+ died while running item 3 of the iterable",
        ):
            next(it)
        with pytest.raises(StopIteration):
            next(it)
        # The pool goes on with the remaining worker (and the restarted ones).
        assert pool.map(h.square, range(6)) == [0, 1, 4, 9, 16, 25]


def test_a_worker_killed_in_a_starmap_chunk_fails_only_that_item(address):
    _two_workers(address)
    with Pool(address=address) as pool:
        # One chunk of five on one worker; its fourth item kills it.
        result = pool.starmap_async(h.kill_on, [(x, 13) for x in range(10, 15)], chunksize=5)
        with pytest.raises(TerminatedWorkerError, match=r"item 3 of the iterable passed to"):
            result.get(120)
        it = pool.imap(functools.partial(h.kill_on, victim=-1), range(5), chunksize=5)
        assert list(it) == [0, 1, 2, 3, 4]  # the pool goes on


def test_the_executor_fails_the_call_whose_worker_died(address):
    _two_workers(address)
    with ProcessPoolExecutor(address=address) as ex:
        with pytest.raises(WorkerDiedError, match=r"tcp://127\.0\.0\.1:\d+"):
            ex.submit(h.kill_on, 1, 1).result(60)
        assert ex.submit(h.square, 5).result(60) == 25


def test_a_killed_chunk_of_large_items_fails_only_the_killer(address):
    _two_workers(address)
    items = [bytes([i]) * (256 << 10) for i in range(6)]  # larger than a pipe buffer each
    with Pool(address=address) as pool:
        it = pool.imap(functools.partial(h.first_byte_or_kill, victim=4), items, chunksize=3)
        assert [next(it) for _ in range(4)] == [(i, 256 << 10) for i in range(4)]
        with pytest.raises(TerminatedWorkerError, match=r"item 4 of the iterable"):
            next(it)
        assert next(it) == (5, 256 << 10)


def test_the_executor_map_fails_only_the_item_whose_worker_died(address):
    _two_workers(address)
    with ProcessPoolExecutor(address=address) as ex:
        it = ex.map(functools.partial(h.kill_on, victim=5), range(8), chunksize=4, timeout=120)
        assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(WorkerDiedError, match=r"item 5 of the iterable"):
            next(it)
        assert ex.submit(h.square, 5).result(60) == 25


def test_retries_run_a_task_again_once_when_its_worker_died(address, tmp_path):
    _two_workers(address)
    marker = str(tmp_path / f"killed-{uuid.uuid4().hex}")
    with Pool(address=address, retries=1) as pool:
        assert pool.starmap(h.kill_once, [(x, 2, marker) for x in range(4)], chunksize=1) == [
            0,
            1,
            2,
            3,
        ]
    assert os.path.exists(marker)  # it did kill a worker once


def test_task_timeout(address):
    with Pool(address=address) as pool:
        with pytest.raises(TaskTimeoutError, match="task_timeout of 0.5 s"):
            pool.apply(h.blocked, (3,), task_timeout=0.5)
        assert pool.apply(h.square, (4,)) == 16


def test_initializer_runs_once_per_worker(address):
    token = uuid.uuid4().hex
    with Pool(address=address, initializer=h.record_init, initargs=(token,)) as pool:
        seen = pool.map(h.init_count, [token] * 12, chunksize=1)
    assert {count for _pid, count in seen} == {1}


def test_an_initializer_that_raises_breaks_the_pool(address):
    with Pool(address=address, initializer=h.failing_init) as pool:
        with pytest.raises(BrokenPoolError, match="initializer failed on purpose"):
            pool.apply(h.square, (2,))
        with pytest.raises(BrokenPoolError):
            pool.map(h.square, range(3))


def test_an_initializer_that_cannot_be_pickled_breaks_the_pool(address):
    from _pool_helpers import Unpicklable

    with Pool(address=address, initializer=h.record_init, initargs=(Unpicklable(),)) as pool:
        with pytest.raises(BrokenPoolError, match="record_init could not be pickled: Serializ"):
            pool.apply(h.square, (2,))
        with pytest.raises(BrokenPoolError, match="make a new pool"):
            pool.map(h.square, range(3))


def test_a_large_function_is_loaded_once_per_worker(address):
    big = h.Big(1 << 20)  # pickled above the scatter threshold: scattered, not sent per task
    with Pool(address=address) as pool:
        out = pool.map(big, range(8), chunksize=1)
    assert [size for _pid, _id, size in out] == [(1 << 20) + x for x in range(8)]
    by_worker: dict = {}
    for pid, ident, _size in out:
        by_worker.setdefault(pid, set()).add(ident)
    assert all(len(ids) == 1 for ids in by_worker.values())


# -- how a pool reaches its cluster --------------------------------------------------


def test_a_pool_with_no_address_owns_a_local_cluster_on_loopback():
    pool = Pool(2)
    try:
        client = pool.client
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert len(client.nthreads()) == 2
        assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]
        assert len(set(pool.map(h.pid_of, range(8), chunksize=1))) >= 1
    finally:
        pool.close()
        pool.join()
    assert client.status == "closed"
    assert pool._cluster.cluster.status.name == "closed"


def test_a_users_client_is_left_open(local_cluster):
    import distributed

    with distributed.Client(local_cluster, set_as_default=False) as client:
        with Pool(client=client) as pool:
            assert pool.map(h.square, range(3)) == [0, 1, 4]
        with ProcessPoolExecutor(client=client) as ex:
            assert ex.submit(h.add, 2, 2).result(60) == 4
        assert client.status == "running"
        assert client.submit(h.square, 6).result(60) == 36


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("face", [Pool, ProcessPoolExecutor])
def test_an_unreachable_scheduler_is_a_clear_error_within_the_connect_timeout(face):
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(
        SchedulerUnreachableError, match=re.escape(f"could not reach a Dask scheduler at {address}")
    ):
        face(address=address, connect_timeout=2)
    assert time.monotonic() - started < 60  # bounded, not a hang (no timing precision asserted)


@pytest.mark.parametrize(
    "kwds, error, match",
    [
        ({"retries": -1}, ValueError, "retries"),
        ({"connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"address": 8786}, TypeError, "address must be a str"),
        ({"address": "tcp://127.0.0.1:1", "client": object()}, ValueError, "either address"),
        ({"client": "tcp://127.0.0.1:1"}, TypeError, "distributed.Client"),
        ({"task_timeout": -1}, ValueError, "task_timeout"),
    ],
)
def test_bad_arguments(kwds, error, match):
    with pytest.raises(error, match=match):
        Pool(**kwds)


def test_without_distributed_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import multiprocess.dask as d\n"
        "try:\n    d.Pool(1)\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert "multiprocess[dask]" in out.stdout, out.stderr
