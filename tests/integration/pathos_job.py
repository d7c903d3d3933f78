"""Run by test_clients.py: a real client of multiprocess, as its users run it."""

import sys

from pathos.multiprocessing import ProcessPool

import multiprocess

if __name__ == "__main__":
    multiprocess.set_start_method(sys.argv[1])
    print("multiprocess from", multiprocess.__file__)
    k = 3
    pool = ProcessPool(nodes=2)
    print(pool.map(lambda x: (lambda y: y**2)(x) + x, range(10)))  # noqa: PLC3002 - the seed
    print(pool.amap(lambda x, y: x * y + k, [1, 2], [3, 4]).get())
    print(list(pool.imap(lambda x: x + k, range(3))), sorted(pool.uimap(lambda x: -x, range(3))))
    print(pool.pipe(lambda a: a * 10, 4), pool.apipe(lambda a: a, 5).get())
    pool.close()
    pool.join()
    pool.clear()
