"""A Pool in asyncio: await its results and ``async for`` over imap, without blocking the loop.

``apply_async``, ``map_async`` and ``starmap_async`` return results that a
coroutine can ``await``; ``imap`` and ``imap_unordered`` work with ``async
for``.  The event loop keeps running meanwhile (a ticker coroutine counts
its turns here), and cancelling the awaiting task (``asyncio.wait_for``
running out) cancels the call.  ``ThreadPool`` (``multiprocess.dummy.Pool``)
does the same with threads.

    python examples/asyncio_pool.py [--start-method fork|spawn|forkserver]
"""

import argparse
import asyncio
import math
import time

import multiprocess as mp
from multiprocess.dummy import Pool as ThreadPool


def is_prime(n):
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


async def ticker(stop):
    ticks = 0
    while not stop.is_set():
        ticks += 1
        await asyncio.sleep(0.01)
    return ticks


async def main(pool):
    stop = asyncio.Event()
    ticks = asyncio.create_task(ticker(stop))

    print("apply_async:", await pool.apply_async(pow, (2, 10)))
    squares, cubes = await asyncio.gather(
        pool.map_async(lambda x: x * x, range(5)),  # a lambda: dill sends it
        pool.starmap_async(pow, [(x, 3) for x in range(5)]),
    )
    print("gather:", squares, cubes)

    primes = [n async for n in pool.imap(is_prime, range(2, 50), chunksize=8)]
    print("primes below 50:", sum(primes))

    try:
        await pool.apply_async(int, ("not a number",))
    except ValueError as e:  # the task's own exception
        print("await raised:", type(e).__name__)

    try:
        await asyncio.wait_for(pool.apply_async(time.sleep, (30,)), timeout=0.2)
    except asyncio.TimeoutError:
        print("wait_for timed out: the call is cancelled")

    stop.set()
    print("the loop kept running:", await ticks > 0)


async def on_threads(pool):
    total = await pool.apply_async(sum, ([1, 2, 3],))
    lengths = sorted([n async for n in pool.imap_unordered(len, ["a", "bb", "ccc"])])
    return total, lengths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    with mp.Pool(2) as pool:  # leaving the block terminates the sleeping worker
        asyncio.run(main(pool))
    with ThreadPool(2) as pool:
        print("ThreadPool:", asyncio.run(on_threads(pool)))
