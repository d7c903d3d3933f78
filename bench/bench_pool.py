"""Pool throughput: multiprocess.Pool against the standard library's, in one run.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_pool.py [--method fork] [--processes 2] [--repeat 5]

Workloads (each timed ``--repeat`` times on one pool per implementation; the
table shows medians and the ratio ours / standard library):

* ``map`` of 200,000 tiny tasks with a module-level function, and with a
  lambda (ours only: the standard library cannot pickle it; its ratio is
  against the standard library with the module-level function);
* ``imap_unordered`` of 50,000 tasks (chunksize 1), module-level function and
  lambda;
* 10,000 ``apply_async`` calls, then every ``get()``;
* ``map`` of 16 payloads of 8 MiB (bytes) that come back (chunksize 1);
* pool start-up: ``Pool(processes)``, one ``map`` over ``processes`` items, ``close()``,
  ``join()``.

Goal: with lambdas, within 1.3x of the standard library with module-level
functions.  The machine is noisy: compare ratios across a few runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any, Callable

import multiprocess


def tiny(x):
    return x + 1


def echo(x):
    return x


def run_map(pool: Any, func: Callable[[Any], Any]) -> None:
    result = pool.map(func, range(200_000))
    assert result[-1] == 200_000


def run_imap_unordered(pool: Any, func: Callable[[Any], Any]) -> None:
    total = sum(pool.imap_unordered(func, range(50_000)))
    assert total == sum(range(1, 50_001))


def run_apply_async(pool: Any, func: Callable[[Any], Any]) -> None:
    results = [pool.apply_async(func, (i,)) for i in range(10_000)]
    assert sum(r.get() for r in results) == sum(range(1, 10_001))


PAYLOADS = [bytes([i]) * (8 << 20) for i in range(16)]


def run_payloads(pool: Any, func: Callable[[Any], Any]) -> None:
    back = pool.map(func, PAYLOADS, chunksize=1)
    assert len(back) == 16 and back[3][:1] == b"\x03"


def timed(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    ours_ctx = multiprocess.get_context(args.method)
    std_ctx = multiprocessing.get_context(args.method)
    n = args.processes
    lam = lambda x: x + 1
    lam_echo = lambda x: x

    rows: list[tuple[str, float, float]] = []  # name, ours, stdlib (nan: none)
    workloads = [
        ("map 200k tiny", run_map, tiny, lam),
        ("imap_unordered 50k", run_imap_unordered, tiny, lam),
        ("apply_async 10k", run_apply_async, tiny, lam),
        ("map 16 x 8 MiB", run_payloads, echo, lam_echo),
    ]
    with std_ctx.Pool(n) as std_pool, ours_ctx.Pool(n) as our_pool:
        # Warm up both pools (workers started, modules imported).
        std_pool.map(tiny, range(100))
        our_pool.map(tiny, range(100))
        our_pool.map(lam, range(100))
        for name, run, func, lam_func in workloads:
            std = timed(lambda: run(std_pool, func), args.repeat)  # noqa: B023
            ours = timed(lambda: run(our_pool, func), args.repeat)  # noqa: B023
            ours_lam = timed(lambda: run(our_pool, lam_func), args.repeat)  # noqa: B023
            rows.append((name, ours, std))
            rows.append((name + " (lambda, ours)", ours_lam, std))
            print(f"  {name}: done", file=sys.stderr, flush=True)

    def startup(ctx: Any) -> None:
        pool = ctx.Pool(n)
        pool.map(tiny, range(n))
        pool.close()
        pool.join()

    rows.append(
        (
            "pool start-up",
            timed(lambda: startup(ours_ctx), args.repeat),
            timed(lambda: startup(std_ctx), args.repeat),
        )
    )

    print(
        f"multiprocess Pool vs multiprocessing Pool: start method {args.method!r}, "
        f"{n} processes, median of {args.repeat}, serializer {ours_ctx.get_serializer()!r}"
    )
    print(f"{'workload':<36} {'ours':>10} {'stdlib':>10} {'ours/stdlib':>12}")
    for name, ours, std in rows:
        print(f"{name:<36} {ours * 1e3:>8.1f}ms {std * 1e3:>8.1f}ms {ours / std:>11.2f}x")
    print(
        "(lambda rows: ours with a lambda against the standard library with a module-level function)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
