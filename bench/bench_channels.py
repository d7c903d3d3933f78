"""Channels and locks, multiprocess against the standard library, in one run.

Measures, for each package under the same start method:

- Queue throughput: 100,000 small objects from a child to the parent;
- Queue throughput for 64 MiB payloads (a numpy array, a bytes object), in GiB/s,
  the parent reading a byte of every page of what it gets;
- Pipe throughput for 64 MiB payloads (a numpy array, a bytes object) from a
  child through a duplex ``Pipe()`` (``send``/``recv``), in GiB/s, the parent
  touching every page as above;
- Pipe round-trip latency of a small object (a child echoes it back);
- uncontended Lock acquire/release.

Each measurement is repeated; the median is printed with the ratio
multiprocess / stdlib (for times: below 1 is faster; for throughput: above 1 is).
Usage: ``python bench/bench_channels.py [--repeat N] [--method fork|spawn|forkserver]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as std_mp  # the reference; the package itself never imports it
import statistics
import time

import multiprocess as our_mp

SMALL_COUNT = 100_000
BIG_BYTES = 64 * 2**20
BIG_COUNT = 4
ROUND_TRIPS = 5_000
LOCK_LOOPS = 500_000


def _produce_small(q, n):
    for i in range(n):
        q.put((i, "x"))


def _produce_big(q, kind, count):
    if kind == "numpy":
        import numpy as np

        payload = np.ones(BIG_BYTES // 8, dtype=np.float64)
    else:
        payload = b"\x01" * BIG_BYTES
    for _ in range(count):
        q.put(payload)


def _send_big(conn, kind, count):
    if kind == "numpy":
        import numpy as np

        payload = np.ones(BIG_BYTES // 8, dtype=np.float64)
    else:
        payload = b"\x01" * BIG_BYTES
    for _ in range(count):
        conn.send(payload)
    conn.recv()  # the parent got them all


def _touch(payload):
    """Read one byte of every 4 KiB page: the data must really be there."""
    return bytes(memoryview(payload).cast("B")[::4096])


def _echo(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def queue_small(mp, method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_produce_small, args=(q, SMALL_COUNT))
    t0 = time.perf_counter()
    p.start()
    for _ in range(SMALL_COUNT):
        q.get()
    elapsed = time.perf_counter() - t0
    p.join()
    return elapsed


def queue_big(mp, method, kind):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_produce_big, args=(q, kind, BIG_COUNT + 1))
    p.start()
    q.get()  # the first one pays for the child's start-up: not counted
    t0 = time.perf_counter()
    for _ in range(BIG_COUNT):
        _touch(q.get())
    elapsed = time.perf_counter() - t0
    p.join()
    return BIG_COUNT * BIG_BYTES / elapsed / 2**30  # GiB/s


def pipe_big(mp, method, kind):
    ctx = mp.get_context(method)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_send_big, args=(b, kind, BIG_COUNT + 1))
    p.start()
    a.recv()  # the first one pays for the child's start-up: not counted
    t0 = time.perf_counter()
    for _ in range(BIG_COUNT):
        _touch(a.recv())
    elapsed = time.perf_counter() - t0
    a.send(None)
    p.join()
    return BIG_COUNT * BIG_BYTES / elapsed / 2**30  # GiB/s


def pipe_round_trip(mp, method):
    ctx = mp.get_context(method)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b, ROUND_TRIPS + 1))
    p.start()
    a.send(0)
    a.recv()  # warm-up: the child is running
    t0 = time.perf_counter()
    for i in range(ROUND_TRIPS):
        a.send(i)
        a.recv()
    elapsed = time.perf_counter() - t0
    p.join()
    return elapsed / ROUND_TRIPS * 1e6  # microseconds


def lock_cycle(mp, method):
    lock = mp.get_context(method).Lock()
    acquire, release = lock.acquire, lock.release
    t0 = time.perf_counter()
    for _ in range(LOCK_LOOPS):
        acquire()
        release()
    return (time.perf_counter() - t0) / LOCK_LOOPS * 1e9  # nanoseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--only", default="", help="run only the cases whose title contains this")
    args = parser.parse_args()
    try:
        import numpy  # noqa: F401

        kinds = ["numpy", "bytes"]
    except ImportError:
        kinds = ["bytes"]

    cases = [
        (
            f"Queue: {SMALL_COUNT:,} small objects (s)",
            lambda mp: queue_small(mp, args.method),
            False,
        ),
        *[
            (
                f"Queue: 64 MiB {kind} (GiB/s)",
                lambda mp, k=kind: queue_big(mp, args.method, k),
                True,
            )
            for kind in kinds
        ],
        *[
            (
                f"Pipe: 64 MiB {kind} (GiB/s)",
                lambda mp, k=kind: pipe_big(mp, args.method, k),
                True,
            )
            for kind in kinds
        ],
        ("Pipe round trip (us)", lambda mp: pipe_round_trip(mp, args.method), False),
        ("Lock acquire+release (ns)", lambda mp: lock_cycle(mp, args.method), False),
    ]
    print(f"start method {args.method}, median of {args.repeat}")
    print(f"{'case':42} {'multiprocess':>13} {'stdlib':>13} {'ratio':>7}")
    for title, fn, higher_is_better in cases:
        if args.only not in title:
            continue
        ours, theirs = [], []
        for _ in range(args.repeat):  # interleaved, so drifts in load hit both
            ours.append(fn(our_mp))
            theirs.append(fn(std_mp))
        o, t = statistics.median(ours), statistics.median(theirs)
        ratio = o / t
        note = "x throughput" if higher_is_better else "x time"
        print(f"{title:42} {o:13.3f} {t:13.3f} {ratio:6.2f}{note}", flush=True)


if __name__ == "__main__":
    main()
