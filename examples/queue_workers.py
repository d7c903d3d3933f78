"""A queue of workers: tasks go to four processes over a Queue, results come back on another.

The tasks are ``(function, arguments)`` pairs whose functions are defined in
this script (``__main__``); the standard library's pickle sends them by name,
which a spawned or forkserver child cannot resolve.  This is the example of the
original ``multiprocess`` README, on every start method.

    python examples/queue_workers.py [--start-method fork|spawn|forkserver]
"""

import argparse

import multiprocess as mp


def worker(tasks, results):
    # "STOP" ends the loop: one is put on the queue per worker.
    for func, args in iter(tasks.get, "STOP"):
        results.put(calculate(func, args))


def calculate(func, args):
    result = func(*args)
    return f"{mp.current_process().name} says that {func.__name__}{args} = {result}"


def mul(a, b):
    return a * b


def plus(a, b):
    return a + b


def main(workers=4):
    tasks1 = [(mul, (i, 7)) for i in range(20)]
    tasks2 = [(plus, (i, 8)) for i in range(10)]
    tasks, results = mp.Queue(), mp.Queue()
    for task in tasks1:
        tasks.put(task)
    processes = [mp.Process(target=worker, args=(tasks, results)) for _ in range(workers)]
    for p in processes:
        p.start()
    lines = [results.get() for _ in tasks1]
    for task in tasks2:  # a second batch, to the same running workers
        tasks.put(task)
    lines += [results.get() for _ in tasks2]
    for _ in processes:
        tasks.put("STOP")
    for p in processes:
        p.join()

    print("\n".join(lines[:3]), "...", sep="\n")
    values = sorted(int(line.rsplit(" ", 1)[1]) for line in lines)
    print(f"results: {len(lines)}, sum: {sum(values)}")
    print("exit codes:", [p.exitcode for p in processes])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    main()
