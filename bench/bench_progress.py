"""What ``progress=`` costs: maps of tiny tasks with and without it, in one run.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_progress.py [--method fork] [--processes 2] [--repeat 7]

Workloads, each timed ``--repeat`` times on one pool (the table shows medians
and the ratio to the same call without ``progress``):

* ``Pool.map`` of 200,000 tiny tasks (default chunksize), with ``progress=``
  None, a callable, a tqdm-like object, and ``True`` (a real tqdm bar, written
  to /dev/null; skipped without tqdm);
* the same with chunksize 100 (2,000 chunks: 2,000 updates);
* ``Pool.imap_unordered`` of 50,000 tasks, chunksize 1 (one progress update per
  task), without progress and with a callable and ``True``;
* ``ProcessPoolExecutor.map`` of 200,000 tasks in chunks of 1,000, without and
  with a callable.

Goal (issue 13): map of 200,000 tiny tasks with ``progress=`` within 1.2x of
without.  The machine is noisy: compare ratios across a few runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from typing import Any, Callable

import multiprocess
from multiprocess.futures import ProcessPoolExecutor


def tiny(x):
    return x + 1


class Count:
    """A progress callable that keeps the last count."""

    def __init__(self) -> None:
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done


class Bar:
    """A tqdm-like object."""

    total = None

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n


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
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    ctx = multiprocess.get_context(args.method)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        has_tqdm = False
    else:
        has_tqdm = True
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the bars write here for the whole run

    def quiet(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            with contextlib.redirect_stderr(devnull):
                fn()

        return run

    rows: list[tuple[str, float, float]] = []

    def case(name: str, base: float, fn: Callable[[], Any]) -> None:
        t = timed(quiet(fn), args.repeat)
        rows.append((name, t, t / base))

    n = 200_000
    with ctx.Pool(args.processes) as pool:
        pool.map(tiny, range(1000))  # warm up
        base = timed(lambda: pool.map(tiny, range(n)), args.repeat)
        rows.append(("map 200k, no progress", base, 1.0))
        case(
            "map 200k, progress=callable", base, lambda: pool.map(tiny, range(n), progress=Count())
        )
        case("map 200k, progress=tqdm-like", base, lambda: pool.map(tiny, range(n), progress=Bar()))
        if has_tqdm:
            case("map 200k, progress=True", base, lambda: pool.map(tiny, range(n), progress=True))
        base = timed(lambda: pool.map(tiny, range(n), 100), args.repeat)
        rows.append(("map 200k chunksize 100, no progress", base, 1.0))
        case(
            "map 200k chunksize 100, progress=callable",
            base,
            lambda: pool.map(tiny, range(n), 100, progress=Count()),
        )
        if has_tqdm:
            case(
                "map 200k chunksize 100, progress=True",
                base,
                lambda: pool.map(tiny, range(n), 100, progress=True),
            )
        m = 50_000
        base = timed(lambda: sum(pool.imap_unordered(tiny, range(m))), args.repeat)
        rows.append(("imap_unordered 50k, no progress", base, 1.0))
        case(
            "imap_unordered 50k, progress=callable",
            base,
            lambda: sum(pool.imap_unordered(tiny, range(m), progress=Count())),
        )
        if has_tqdm:
            case(
                "imap_unordered 50k, progress=True",
                base,
                lambda: sum(pool.imap_unordered(tiny, range(m), progress=True)),
            )
    with ProcessPoolExecutor(args.processes, mp_context=ctx) as ex:
        list(ex.map(tiny, range(1000), chunksize=100))  # warm up
        base = timed(lambda: list(ex.map(tiny, range(n), chunksize=1000)), args.repeat)
        rows.append(("executor map 200k, no progress", base, 1.0))
        case(
            "executor map 200k, progress=callable",
            base,
            lambda: list(ex.map(tiny, range(n), chunksize=1000, progress=Count())),
        )
    devnull.close()

    print(
        f"{args.method}, {args.processes} processes, median of {args.repeat} (Python "
        f"{sys.version.split()[0]}, tqdm {'yes' if has_tqdm else 'no'})"
    )
    print(f"{'case':44} {'seconds':>9} {'ratio':>7}")
    for name, t, ratio in rows:
        print(f"{name:44} {t:9.4f} {ratio:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
