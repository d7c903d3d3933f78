"""What ``progress=`` costs: maps of tiny tasks with and without it, in one run.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_progress.py [--method fork] [--processes 2] [--repeat 7]

Workloads, in groups timed together (each call of a group in turn, ``--repeat``
rounds, on one pool; the table shows medians and the ratio to the same call
without ``progress``):

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


def timed_together(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median time of each of ``fns``, run in turn ``repeat`` rounds (so that a change
    of the machine's load falls on all of them alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


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

    def group(cases: list[tuple[str, Callable[[], Any]]]) -> None:
        """Time ``cases`` together; ratios to the first (the call without progress)."""
        results = timed_together([quiet(fn) for _name, fn in cases], args.repeat)
        for (name, _fn), t in zip(cases, results):
            rows.append((name, t, t / results[0]))

    n, m = 200_000, 50_000
    with ctx.Pool(args.processes) as pool:
        pool.map(tiny, range(1000))  # warm up
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("map 200k, no progress", lambda: pool.map(tiny, range(n))),
            ("map 200k, progress=callable", lambda: pool.map(tiny, range(n), progress=Count())),
            ("map 200k, progress=tqdm-like", lambda: pool.map(tiny, range(n), progress=Bar())),
        ]
        if has_tqdm:
            cases.append(
                ("map 200k, progress=True", lambda: pool.map(tiny, range(n), progress=True))
            )
        group(cases)
        cases = [
            ("map 200k chunksize 100, no progress", lambda: pool.map(tiny, range(n), 100)),
            (
                "map 200k chunksize 100, progress=callable",
                lambda: pool.map(tiny, range(n), 100, progress=Count()),
            ),
        ]
        if has_tqdm:
            cases.append(
                (
                    "map 200k chunksize 100, progress=True",
                    lambda: pool.map(tiny, range(n), 100, progress=True),
                )
            )
        group(cases)
        cases = [
            ("imap_unordered 50k, no progress", lambda: sum(pool.imap_unordered(tiny, range(m)))),
            (
                "imap_unordered 50k, progress=callable",
                lambda: sum(pool.imap_unordered(tiny, range(m), progress=Count())),
            ),
        ]
        if has_tqdm:
            cases.append(
                (
                    "imap_unordered 50k, progress=True",
                    lambda: sum(pool.imap_unordered(tiny, range(m), progress=True)),
                )
            )
        group(cases)
    with ProcessPoolExecutor(args.processes, mp_context=ctx) as ex:
        list(ex.map(tiny, range(1000), chunksize=100))  # warm up
        group(
            [
                (
                    "executor map 200k, no progress",
                    lambda: list(ex.map(tiny, range(n), chunksize=1000)),
                ),
                (
                    "executor map 200k, progress=callable",
                    lambda: list(ex.map(tiny, range(n), chunksize=1000, progress=Count())),
                ),
            ]
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
