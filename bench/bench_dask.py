"""multiprocess.dask on a 2-worker LocalCluster, against Dask's own client.map and our local Pool.

Run from the repository root (needs ``pip install -e ".[dask]"``)::

    PYTHONPATH=src python bench/bench_dask.py [--repeat 5] [--tasks 20000] [--mib 200]

Workloads (each timed ``--repeat`` times; the table shows medians):

* 20,000 tiny tasks (Dask's own ``client.map`` is timed ``--dask-repeat``
  times, once by default: it takes minutes): ``multiprocess.dask.Pool(2).map`` (chunked as our Pool
  chunks: a few Dask tasks), Dask's own ``client.map`` + ``client.gather`` of
  the same function on the same cluster (one Dask task per item), and our
  local ``multiprocess.Pool(2).map``.  Ratio: Dask's time per tiny task over
  ours (goal: at least 20x).
* 16 tasks sharing one 200 MiB numpy array (``functools.partial`` over it,
  ``chunksize=1``): the time of 16 against the time of 1 (a copy per task
  would make it about 16x), and the bytes that crossed between workers
  (Dask's transfer log) plus how many distinct copies each worker loaded
  (goal: one per worker).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import numpy as np

import multiprocess
from multiprocess.dask import Pool as DaskPool


def tiny(x):
    return x + 1


def use_array(arr, i):
    return os.getpid(), id(arr), int(arr[i])


def incoming_bytes(dask_worker=None):
    return sum(entry["total"] for entry in dask_worker.transfer_incoming_log)


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument(
        "--dask-repeat", type=int, default=1, help="runs of Dask's client.map (slow: minutes)"
    )
    args = parser.parse_args()
    n = args.tasks
    expected = sum(range(1, n + 1))

    with DaskPool(2) as pool, multiprocess.Pool(2) as local:
        client = pool.client
        pool.map(tiny, range(100))  # warm: workers load the function once
        local.map(tiny, range(100))

        def ours():
            assert sum(pool.map(tiny, range(n))) == expected

        def dask_own():
            futures = client.map(tiny, range(n), pure=False)
            assert sum(client.gather(futures)) == expected
            del futures

        def ours_local():
            assert sum(local.map(tiny, range(n))) == expected

        t_ours = timed(ours, args.repeat)
        t_dask = timed(dask_own, args.dask_repeat)
        t_local = timed(ours_local, args.repeat)
        print(f"{n:,} tiny tasks on a 2-worker LocalCluster (medians)")
        print(
            f"  multiprocess.dask.Pool.map       {t_ours:8.3f} s  {t_ours / n * 1e6:8.2f} us/task"
        )
        print(
            f"  client.map + gather (Dask)       {t_dask:8.3f} s  {t_dask / n * 1e6:8.2f} us/task"
        )
        print(
            f"  multiprocess.Pool(2).map (local) {t_local:8.3f} s  {t_local / n * 1e6:8.2f} us/task"
        )
        print(
            f"  ratio Dask / ours: {t_dask / t_ours:.1f}x (goal >= 20x); "
            f"ours / local Pool: {t_ours / t_local:.1f}x"
        )

        arr = np.arange(args.mib * (1 << 20) // 8, dtype=np.int64)
        before = sum(client.run(incoming_bytes).values())
        func = functools.partial(use_array, arr)
        start = time.perf_counter()
        one = pool.map(func, range(1), chunksize=1)
        t_one = time.perf_counter() - start
        start = time.perf_counter()
        out = pool.map(func, range(16), chunksize=1)
        t_16 = time.perf_counter() - start
        moved = sum(client.run(incoming_bytes).values()) - before
        copies: dict[int, set[int]] = {}
        for pid, ident, _value in one + out:
            copies.setdefault(pid, set()).add(ident)
        print(f"\n16 tasks sharing one {args.mib} MiB array (partial, chunksize=1), one run")
        print(f"  1 task (scatter, first worker loads it)  {t_one:8.3f} s")
        print(
            f"  16 tasks (same function object, a new call: scattered again) {t_16:8.3f} s "
            f"({t_16 / t_one:.1f}x the single task; a copy per task would be ~16x)"
        )
        print(
            f"  bytes moved between workers: {moved / (1 << 20):.0f} MiB "
            f"({moved / (args.mib << 20):.2f} array copies)"
        )
        print(
            f"  copies loaded per worker: {sorted(len(v) for v in copies.values())} "
            f"over {len(copies)} workers"
        )


if __name__ == "__main__":
    main()
