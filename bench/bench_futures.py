"""ProcessPoolExecutor throughput: ours against the standard library's and loky's, in one run.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_futures.py [--method fork] [--processes 2] [--repeat 3]

Columns (medians of ``--repeat`` runs, each implementation on one warm pool):

* ``stdlib``: ``concurrent.futures.ProcessPoolExecutor`` with the standard
  library's context for ``--method``;
* ``Pool``: our ``multiprocess.Pool``, the reference: ``map`` for the ``map``
  rows, ``apply_async`` + ``get()`` for ``submit``, ``Pool``/``close``/``join``
  for start-up;
* ``ours``: ``multiprocess.futures.ProcessPoolExecutor`` with our context, or
  "not built yet" while that module does not exist;
* ``loky``: ``loky.ProcessPoolExecutor`` with its own start method (it has no
  fork or forkserver), when loky is installed.

Workloads: ``map`` of 20,000 tiny tasks with ``chunksize=1`` and with
``--chunksize`` (default 1000), 10,000 ``submit`` then every ``result()``, and
start-up (create, one ``map`` over ``--processes`` items, shut down).

Goals (issue 12): ``map`` with ``chunksize=1`` and ``submit`` at most 0.3x the
standard library's executor; ``map`` with a chunksize within 1.1x of our
``Pool.map``.  The machine is noisy: compare ratios across a few runs.

A map with a chunksize takes a few milliseconds, less than the noise between
two columns timed a second apart; so the last line times it again, ours and
``Pool.map`` alternating (both open, ``--pairs`` runs each), and gives the
ratio of their medians.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
from typing import Any, Callable

from bench_pool import timed  # this folder is on sys.path when run as a script

import multiprocess

try:
    from multiprocess.futures import ProcessPoolExecutor as OurExecutor
except ImportError:
    OurExecutor = None  # not built yet

try:
    import loky
except ImportError:
    loky = None

N_MAP = 20_000
N_SUBMIT = 10_000


def tiny(x):
    return x + 1


def executor_map(chunksize: int) -> Callable[[Any], None]:
    def run(executor: Any) -> None:
        result = list(executor.map(tiny, range(N_MAP), chunksize=chunksize))
        assert result[-1] == N_MAP

    return run


def pool_map(chunksize: int) -> Callable[[Any], None]:
    def run(pool: Any) -> None:
        result = pool.map(tiny, range(N_MAP), chunksize=chunksize)
        assert result[-1] == N_MAP

    return run


def executor_submit(executor: Any) -> None:
    futures = [executor.submit(tiny, i) for i in range(N_SUBMIT)]
    assert sum(f.result() for f in futures) == sum(range(1, N_SUBMIT + 1))


def pool_apply_async(pool: Any) -> None:
    results = [pool.apply_async(tiny, (i,)) for i in range(N_SUBMIT)]
    assert sum(r.get() for r in results) == sum(range(1, N_SUBMIT + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunksize", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args(argv)
    n = args.processes
    ours_ctx = multiprocess.get_context(args.method)
    std_ctx = multiprocessing.get_context(args.method)

    # Each column: how to make its executor (None: not available, with why).
    makers: dict[str, tuple[Callable[[], Any] | None, str]] = {
        "stdlib": (
            lambda: concurrent.futures.ProcessPoolExecutor(n, mp_context=std_ctx),
            "",
        ),
        "Pool": (lambda: ours_ctx.Pool(n), ""),
        "ours": (
            (lambda: OurExecutor(n, mp_context=ours_ctx)) if OurExecutor else None,
            "not built yet",
        ),
        "loky": (
            (lambda: loky.ProcessPoolExecutor(n)) if loky else None,
            "not installed",
        ),
    }
    workloads: list[tuple[str, Callable[[Any], None], Callable[[Any], None]]] = [
        ("map 20k chunksize=1", executor_map(1), pool_map(1)),
        (
            f"map 20k chunksize={args.chunksize}",
            executor_map(args.chunksize),
            pool_map(args.chunksize),
        ),
        ("submit 10k + result()", executor_submit, pool_apply_async),
    ]
    times: dict[tuple[str, str], float] = {}
    for column, (make, _) in makers.items():
        if make is None:
            continue
        with make() as executor:
            # Warm up: every worker started, modules imported.
            list(executor.map(tiny, range(200)))
            for name, on_executor, on_pool in workloads:
                run = on_pool if column == "Pool" else on_executor
                times[name, column] = timed(lambda: run(executor), args.repeat)  # noqa: B023
        print(f"  {column}: done", file=sys.stderr, flush=True)

    def startup(make: Callable[[], Any], pool: bool) -> None:
        executor = make()
        if pool:
            executor.map(tiny, range(n))
            executor.close()
            executor.join()
        else:
            list(executor.map(tiny, range(n)))
            executor.shutdown(wait=True)

    for column, (make, _) in makers.items():
        if make is not None:
            times["start-up", column] = timed(
                lambda: startup(make, column == "Pool"),  # noqa: B023
                args.repeat,
            )

    print(
        f"ProcessPoolExecutor: start method {args.method!r} (loky: its own), {n} processes, "
        f"median of {args.repeat}, serializer {ours_ctx.get_serializer()!r}"
    )
    columns = list(makers)
    header = f"{'workload':<26}" + "".join(f"{c:>11}" for c in columns)
    header += f"{'ours/stdlib':>13}{'ours/Pool':>11}{'loky/stdlib':>13}{'Pool/stdlib':>13}"
    print(header)
    for name in [w[0] for w in workloads] + ["start-up"]:
        row = f"{name:<26}"
        for column in columns:
            value = times.get((name, column))
            row += f"{value * 1e3:>9.1f}ms" if value is not None else f"{'-':>11}"
        for top, bottom, width in (
            ("ours", "stdlib", 13),
            ("ours", "Pool", 11),
            ("loky", "stdlib", 13),
            ("Pool", "stdlib", 13),
        ):
            a, b = times.get((name, top)), times.get((name, bottom))
            row += f"{a / b:>{width - 1}.2f}x" if a is not None and b else f"{'-':>{width}}"
        print(row)
    if OurExecutor is not None and args.pairs > 0:
        ours_run, pool_run = executor_map(args.chunksize), pool_map(args.chunksize)
        with OurExecutor(n, mp_context=ours_ctx) as executor, ours_ctx.Pool(n) as pool:
            for _ in range(10):  # warm up
                ours_run(executor)
                pool_run(pool)
            ours_times, pool_times = [], []
            for _ in range(args.pairs):
                ours_times.append(timed(lambda: ours_run(executor), 1))
                pool_times.append(timed(lambda: pool_run(pool), 1))
        ours_t, pool_t = statistics.median(ours_times), statistics.median(pool_times)
        print(
            f"map 20k chunksize={args.chunksize}, ours and Pool.map alternating, median of "
            f"{args.pairs} each: ours {ours_t * 1e3:.2f}ms, Pool {pool_t * 1e3:.2f}ms, "
            f"ours/Pool {ours_t / pool_t:.2f}x"
        )
    for column, (make, why) in makers.items():
        if make is None:
            print(f"({column}: {why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
