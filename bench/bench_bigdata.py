"""Large data through a Pool, ours against the standard library's, side by side.

    PYTHONPATH=src python bench/bench_bigdata.py [--method fork] [--processes 2] [--repeat 3]
        [--mib 200] [--only payloads]

Rows (each timed in a fresh interpreter, median of ``--repeat`` runs):

* ``partial over a 200 MB array``: ``Pool(2).map(partial(f, a), range(16),
  chunksize=1)`` where ``a`` is a 200 MB numpy array and ``f`` reads one
  element: pool start and stop included (the array is made before the clock
  starts).  Also the parent's peak resident memory (``ru_maxrss``) against
  the array's size: the issue asks for at most 1.5x.
* ``the same with a 1-element array``: what starting and stopping the pool
  costs alone (its workers import numpy and load the function), and the
  best ratio the row above could reach if its 200 MB cost nothing.
* ``map 16 x 8 MiB bytes``: ``pool.map(echo, payloads, chunksize=1)`` on a
  started pool, the payloads coming back.

Our pool sends the partial's array once, in one memfd that each worker maps
(pool/_oob.py); the standard library pickles it into every task.  mpire is
measured too when installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import time


def touch(a, i):
    return float(a[(i * 7919) % len(a)])


def touch_shared(shared, i):
    """``touch`` as mpire calls it: its shared objects first (module level, so
    that spawn and forkserver can pickle it)."""
    return touch(shared, i)


def echo(x):
    return x


def _pool_module(impl: str):
    if impl == "ours":
        import multiprocess

        return multiprocess
    if impl == "stdlib":
        import multiprocessing

        return multiprocessing
    raise ValueError(impl)


def child(impl: str, case: str, method: str, processes: int, mib: int) -> dict:
    """One measurement, in this (fresh) interpreter."""
    import numpy as np

    if case in ("partial", "floor"):
        a = np.arange(mib * (1 << 20) // 8 if case == "partial" else 1, dtype=np.float64)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        func = functools.partial(touch, a)
        start = time.perf_counter()
        if impl == "mpire":
            from mpire import WorkerPool

            with WorkerPool(processes, shared_objects=a, start_method=method) as pool:
                out = pool.map(touch_shared, range(16), chunk_size=1)
        else:
            ctx = _pool_module(impl).get_context(method)
            with ctx.Pool(processes) as pool:
                out = pool.map(func, range(16), chunksize=1)
                pool.close()
                pool.join()
        elapsed = time.perf_counter() - start
        assert out == [touch(a, i) for i in range(16)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"seconds": elapsed, "peak": peak, "before": base_rss, "array": a.nbytes}
    if case == "payloads":
        payloads = [bytes([i]) * (8 << 20) for i in range(16)]
        ctx = _pool_module(impl).get_context(method)
        with ctx.Pool(processes) as pool:
            pool.map(echo, range(processes * 4))
            times = []
            for _ in range(3):
                start = time.perf_counter()
                back = pool.map(echo, payloads, chunksize=1)
                times.append(time.perf_counter() - start)
            assert back == payloads
        return {"seconds": statistics.median(times)}
    raise ValueError(case)


def _run(impl: str, case: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        f"{impl}:{case}",
        "--method",
        args.method,
        "--processes",
        str(args.processes),
        "--mib",
        str(args.mib),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument(
        "--only",
        choices=["partial", "floor", "payloads"],
        help="run only this row (by its case name)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        impl, case = args.child.split(":")
        print(json.dumps(child(impl, case, args.method, args.processes, args.mib)))
        return 0

    impls = ["ours", "stdlib"]
    try:
        import mpire  # noqa: F401

        impls.append("mpire")
    except ImportError:
        pass
    rows = []
    for case, label in (
        ("partial", f"16 tasks, partial over a {args.mib} MB array, start+stop"),
        ("floor", "  the same with a 1-element array (start+stop)"),
        ("payloads", "map 16 x 8 MiB bytes, chunksize 1"),
    ):
        if args.only and case != args.only:
            continue
        runs = {impl: [] for impl in impls if impl != "mpire" or case != "payloads"}
        for _ in range(args.repeat):
            for impl, results in runs.items():  # interleaved: the load hits all alike
                results.append(_run(impl, case, args))
                print(f"  {label} {impl}: {results[-1]['seconds']:.3f}s", file=sys.stderr)
        rows.append((case, label, runs))

    print(
        f"Large data, multiprocess vs multiprocessing: start method {args.method!r}, "
        f"{args.processes} processes, median of {args.repeat} fresh interpreters"
    )
    print(f"{'workload':<52} {'ours':>9} {'stdlib':>9} {'ours/stdlib':>12}")
    for case, label, runs in rows:
        ours = statistics.median(r["seconds"] for r in runs["ours"])
        std = statistics.median(r["seconds"] for r in runs["stdlib"])
        print(f"{label:<52} {ours:>8.3f}s {std:>8.3f}s {ours / std:>11.3f}x")
        if "mpire" in runs:
            mp = statistics.median(r["seconds"] for r in runs["mpire"])
            print(f"{'  (mpire)':<52} {mp:>8.3f}s")
        if case == "floor" and rows[0][0] == "partial":
            partial_std = statistics.median(r["seconds"] for r in rows[0][2]["stdlib"])
            # What the partial row's ratio would be if its array cost nothing.
            print(
                f"{'  floor of the partial row (this / its stdlib time)':<52} "
                f"{ours / partial_std:>8.3f}x {std / partial_std:>8.3f}x"
            )
        if case == "partial":
            for impl in runs:
                peak = statistics.median(r["peak"] for r in runs[impl])
                array = runs[impl][0]["array"]
                print(
                    f"  parent's peak RSS, {impl}: {peak / 2**20:.0f} MiB = "
                    f"{peak / array:.2f}x the array ({array / 2**20:.0f} MiB)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
