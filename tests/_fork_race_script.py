"""Run as a script: forks while a queue's feeder thread pickles with dill.

``python _fork_race_script.py METHOD N`` puts N ``(function, argument)`` pairs
on a Queue (lambdas and functions of this ``__main__``, so the feeder thread
pickles them with dill, importing it on the first one) and at once starts N
processes that each take one pair and send back its result.  Under fork every
start is a fork() racing the feeder thread.  Prints ``ok N`` when all results
arrived.
"""

import sys

import multiprocess as mp

SCALE = 3


def triple(x):
    return x * SCALE


def work(tasks, results):
    func, arg = tasks.get(timeout=60)
    results.put(func(arg))


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    n = int(sys.argv[2])
    tasks = ctx.Queue()
    results = ctx.Queue()
    for i in range(n):
        tasks.put((triple, i) if i % 2 else (lambda x: x * SCALE, i))
    procs = [ctx.Process(target=work, args=(tasks, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in range(n))
    for p in procs:
        p.join(60)
    assert got == [i * SCALE for i in range(n)], got
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    print("ok", n)
