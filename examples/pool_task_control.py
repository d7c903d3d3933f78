"""A Pool with per-item timeouts, progress, and errors that name the failed item.

One item of the map hangs: ``task_timeout`` kills its worker after a second,
that item alone fails with ``TaskTimeoutError`` and the other items of its
chunk still come.  ``progress=`` takes a callable ``progress(done, total)``
(or ``True`` for a tqdm bar, with ``pip install multiprocess[progress]``).
An exception raised for one item carries a note naming the function, the
item's index and its value.

    python examples/pool_task_control.py [--start-method fork|spawn|forkserver]
"""

import argparse
import threading

import multiprocess as mp


def work(x):
    if x == 3:
        threading.Event().wait()  # hangs for ever: the timeout ends it
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x * x


def main():
    seen = []

    def progress(done, total):  # called in the parent, from the pool's result thread
        seen.append((done, total))

    with mp.Pool(2, task_timeout=1) as pool:
        results = pool.imap(work, range(8), chunksize=4, progress=progress)
        for i in range(8):
            try:
                print(f"item {i}: {next(results)}")
            except mp.TaskTimeoutError as e:
                print(f"item {i}: timed out ({type(e).__name__})")
        done, total = seen[-1]
        print(f"progress: {done}/{total} items")

        try:
            pool.map(work, [1, 2, -3, 4], chunksize=2)
        except ValueError as e:
            # The note names the item (before Python 3.11 it also ends str(e)).
            print(f"map failed: {type(e).__name__}; note: {e.__notes__[0]}")

        # A call's own task_timeout overrides the pool's (math.inf: no limit).
        print("apply:", pool.apply(work, (5,), task_timeout=30))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    main()
