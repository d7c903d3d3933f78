"""Manager proxy calls, multiprocess against the standard library, in one run.

Measures, for each package under the same start method, with a started
``Manager()``:

- proxy call latency: ``list.append`` on a list proxy (the call, its round trip
  to the server process and the answer), in microseconds per call;
- the same from a child process, where the proxy was rebuilt from a pickle;
- ``dict.__getitem__`` returning a small dict;
- creating a proxied object (``manager.list()``), then releasing it.

Each measurement is repeated; the median is printed with the ratio
multiprocess / stdlib (below 1: ours is faster).  Goal: proxy calls no slower
than the standard library's.

Usage: ``python bench/bench_managers.py [--repeat N] [--calls N] [--method fork|spawn|forkserver]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as std_mp  # the reference; the package itself never imports it
import statistics
import time

import multiprocess as our_mp


def _append_loop(proxy, n, out):
    t0 = time.perf_counter()
    append = proxy.append
    for i in range(n):
        append(i)
    out.put(time.perf_counter() - t0)


def append_latency(manager, n):
    lst = manager.list()
    append = lst.append
    append(0)  # connect first
    t0 = time.perf_counter()
    for i in range(n):
        append(i)
    elapsed = time.perf_counter() - t0
    return elapsed / n * 1e6


def append_latency_child(mp, manager, n, method):
    ctx = mp.get_context(method)
    lst = manager.list()
    out = ctx.SimpleQueue()
    p = ctx.Process(target=_append_loop, args=(lst, n, out))
    p.start()
    elapsed = out.get()
    p.join()
    return elapsed / n * 1e6


def getitem_latency(manager, n):
    d = manager.dict()
    d["k"] = {"a": 1, "b": [1, 2, 3], "c": "text"}
    getitem = d.__getitem__
    getitem("k")
    t0 = time.perf_counter()
    for _ in range(n):
        getitem("k")
    return (time.perf_counter() - t0) / n * 1e6


def create_latency(manager, n):
    keep = manager.dict()  # a program usually holds some proxy meanwhile
    t0 = time.perf_counter()
    for _ in range(n):
        lst = manager.list()
        del lst
    elapsed = time.perf_counter() - t0
    del keep
    return elapsed / n * 1e6


def run(mp, method, args):
    ctx = mp.get_context(method)
    manager = ctx.Manager()
    try:
        return {
            "list.append (us/call)": [
                append_latency(manager, args.calls) for _ in range(args.repeat)
            ],
            "list.append from a child (us/call)": [
                append_latency_child(mp, manager, args.calls, method) for _ in range(args.repeat)
            ],
            "dict.__getitem__ (us/call)": [
                getitem_latency(manager, args.calls) for _ in range(args.repeat)
            ],
            "manager.list() + release (us)": [
                create_latency(manager, max(50, args.calls // 50)) for _ in range(args.repeat)
            ],
        }
    finally:
        manager.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    args = parser.parse_args()

    results = {}
    # Interleave the packages so that machine noise hits both alike.
    ours, theirs = {}, {}
    for _ in range(2):
        for name, data in run(our_mp, args.method, args).items():
            ours.setdefault(name, []).extend(data)
        for name, data in run(std_mp, args.method, args).items():
            theirs.setdefault(name, []).extend(data)
    for name, data in ours.items():
        results[name] = (statistics.median(data), statistics.median(theirs[name]))

    print(
        f"managers, start method {args.method!r}, serializer {our_mp.get_serializer()!r}, "
        f"median of {2 * args.repeat} runs"
    )
    print(f"{'measure':40} {'multiprocess':>14} {'stdlib':>10} {'ratio':>8}")
    for name, (ours_t, std_t) in results.items():
        print(f"{name:40} {ours_t:14.1f} {std_t:10.1f} {ours_t / std_t:8.2f}")


if __name__ == "__main__":
    main()
