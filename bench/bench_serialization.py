"""Serialization speed: pickle, the standard library's ForkingPickler, ours, dill.

Run from the repository root (the package must be importable)::

    PYTHONPATH=src python bench/bench_serialization.py [--repeat 7] [--min-time 0.02]

For each payload and each serializer, a loop of N calls is timed ``--repeat``
times (N chosen so that one loop takes at least ``--min-time`` seconds); the
table shows the median time per call and ratios.  Ours is
``multiprocess.reduction.dumps`` with the default 'dill' serializer.  Where
pickle cannot serialize a payload (lambdas, closures), ratios are against dill.
The machine is noisy: compare ratios across a few runs, not single times.
"""

from __future__ import annotations

import argparse
import functools
import pickle
import statistics
import sys
import timeit

import dill
import numpy as np

from multiprocess import reduction

try:  # the standard library's, for reference only
    from multiprocessing.reduction import ForkingPickler as StdForkingPickler
except ImportError:  # pragma: no cover
    StdForkingPickler = None


def module_function(x):
    return x + 1


def make_adder(n):
    def adder(x):
        return x + n

    return adder


class Record:
    def __init__(self, i):
        self.i = i
        self.name = str(i)


TUPLES = [(i, str(i), float(i)) for i in range(10_000)]

PAYLOADS = {
    "10k ints": list(range(10_000)),
    "10k tuples (i, str, float)": TUPLES,
    "dict 10k str->int": {str(i): i for i in range(10_000)},
    "10k strings": [f"string number {i}" for i in range(10_000)],
    "numpy 1e6 float64 (in-band)": np.arange(1_000_000, dtype=np.float64),
    "small tuple (1, 'a', 2.0)": (1, "a", 2.0),
    "10k instances (importable class)": [Record(i) for i in range(10_000)],
    "importable function (statistics.mean)": statistics.mean,
    "__main__ function (by value)": module_function,
    "lambda": lambda x: x * 2,
    "closure": make_adder(3),
    "lambda + 10k tuples": (lambda x: x * 2, TUPLES),
}


def _check(original, copy, name: str, who: str) -> None:
    if original is statistics.mean:
        assert copy is statistics.mean, (name, who)
    elif callable(original):
        assert copy(1) == original(1), (name, who)
    elif isinstance(original, np.ndarray):
        assert (copy == original).all(), (name, who)
    elif isinstance(original, tuple) and callable(original[0]):
        assert copy[0](1) == original[0](1) and copy[1] == original[1], (name, who)
    elif not isinstance(original, list) or not isinstance(original[0], Record):
        assert copy == original, (name, who)


def _time(func, repeat: int, min_time: float) -> float:
    """Median seconds per call of ``func`` over ``repeat`` loops."""
    timer = timeit.Timer(func)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            break
        number *= 2 if elapsed == 0 else max(2, min(10, int(min_time / elapsed) + 1))
    return statistics.median(timer.repeat(repeat, number)) / number


def _fmt(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def _dumpers():
    dumpers = {
        "pickle": lambda x: pickle.dumps(x, 5),
        "stdlib-mp": None,
        "ours": reduction.dumps,
        "dill": lambda x: dill.dumps(x, protocol=5, recurse=True),
    }
    if StdForkingPickler is not None:
        dumpers["stdlib-mp"] = lambda x: bytes(StdForkingPickler.dumps(x, 5))
    return dumpers


_LOADERS = {"pickle": pickle.loads, "stdlib-mp": pickle.loads, "ours": reduction.loads}
_LOADERS["dill"] = dill.loads


def run(repeat: int, min_time: float) -> None:
    dumpers = _dumpers()
    rows = []
    for name, payload in PAYLOADS.items():
        dump_times, load_times = {}, {}
        for who, dumper in dumpers.items():
            if dumper is None:
                dump_times[who] = load_times[who] = None
                continue
            try:
                data = dumper(payload)
            except (pickle.PicklingError, AttributeError, TypeError):
                # pickle and the standard library refuse lambdas and closures.
                dump_times[who] = load_times[who] = None
                continue
            loader = _LOADERS[who]
            _check(payload, loader(data), name, who)
            dump_times[who] = _time(functools.partial(dumper, payload), repeat, min_time)
            load_times[who] = _time(functools.partial(loader, data), repeat, min_time)
        rows.append((name, dump_times, load_times))
        print(f"  measured {name}", file=sys.stderr)

    for title, index in (("dumps", 1), ("loads", 2)):
        print(f"\n{title} (median per call; ratios: lower is better)")
        header = (
            f"{'payload':38} {'pickle':>10} {'stdlib-mp':>10} {'ours':>10} {'dill':>10}"
            f" {'ours/pickle':>12} {'dill/pickle':>12} {'ours/dill':>10}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            times = row[index]
            print(
                f"{row[0]:38} {_fmt(times['pickle']):>10} {_fmt(times['stdlib-mp']):>10}"
                f" {_fmt(times['ours']):>10} {_fmt(times['dill']):>10}"
                f" {_ratio(times['ours'], times['pickle']):>12}"
                f" {_ratio(times['dill'], times['pickle']):>12}"
                f" {_ratio(times['ours'], times['dill']):>10}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed loops per measurement")
    parser.add_argument(
        "--min-time", type=float, default=0.02, help="seconds one timed loop lasts at least"
    )
    args = parser.parse_args()
    print(
        f"Python {sys.version.split()[0]}, dill {dill.__version__}, numpy {np.__version__}; "
        f"median of {args.repeat} loops of >= {args.min_time}s"
    )
    run(args.repeat, args.min_time)


if __name__ == "__main__":
    main()
