"""Large numpy arrays between processes: through a Queue, and in shared memory.

A Queue sends a large array out of band: its buffer is written from the
array's own memory, with no pickling copy (on Linux, payloads of 1 MiB or
more travel in a memory file that the receiver maps).  When several
processes must work on one array in place, put it in ``SharedMemory`` and
send its name: each process maps the same pages.  Needs numpy.

    python examples/large_arrays.py [--start-method fork|spawn|forkserver]
"""

import argparse

import numpy as np

import multiprocess as mp
from multiprocess.shared_memory import SharedMemory

ROWS, COLS = 2048, 4096  # 8 M float64: 64 MiB


def column_sums(inbox, outbox):
    # Arrays come in until None; each one's column sums go back.  (Not
    # iter(inbox.get, None): that compares each array with None by ==.)
    while (array := inbox.get()) is not None:
        outbox.put(array.sum(axis=0))


def scale_rows(name, shape, start, stop):
    # Attach to the parent's block by name and scale our share of the rows in place.
    block = SharedMemory(name)
    try:
        array = np.ndarray(shape, dtype=np.float64, buffer=block.buf)
        array[start:stop] *= 2.0
        del array  # release the view before closing the block
    finally:
        block.close()


def through_a_queue():
    inbox, outbox = mp.Queue(), mp.Queue()
    worker = mp.Process(target=column_sums, args=(inbox, outbox))
    worker.start()
    data = np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)
    inbox.put(data)
    sums = outbox.get(timeout=60)
    inbox.put(None)
    worker.join()
    match = np.array_equal(sums, data.sum(axis=0))
    print(f"queue: sent {data.nbytes >> 20} MiB, column sums match: {match}")


def in_shared_memory(workers=4):
    block = SharedMemory(create=True, size=ROWS * COLS * 8)
    try:
        array = np.ndarray((ROWS, COLS), dtype=np.float64, buffer=block.buf)
        array[:] = 1.0
        step = ROWS // workers
        processes = [
            mp.Process(target=scale_rows, args=(block.name, array.shape, i * step, (i + 1) * step))
            for i in range(workers)
        ]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        print(
            f"shared memory: {workers} workers scaled {array.nbytes >> 20} MiB in place, "
            f"every element is 2.0: {bool((array == 2.0).all())}"
        )
        del array
    finally:
        block.close()
        block.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    through_a_queue()
    in_shared_memory()
