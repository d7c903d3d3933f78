"""Run by tests/test_dask.py as a script: lambdas, closures and classes of __main__ on Dask
workers that never imported this file.  argv[1]: the scheduler's address."""

import sys

from multiprocess.dask import Pool, ProcessPoolExecutor


class Point:
    def __init__(self, x):
        self.x = x

    def norm(self):
        return abs(self.x)


if __name__ == "__main__":
    address = sys.argv[1]
    offset = 10  # a guard-only global, used by the lambda below

    def closure(k):
        return lambda x: x * k + offset

    with Pool(address=address) as pool:
        print("map", pool.map(lambda x: x + offset, range(4)))
        print("class", [p.norm() for p in pool.map(Point, [-1, 2, -3])])
        print("closure", pool.apply(closure(3), (2,)))
        print("starmap", pool.starmap(lambda a, b: Point(a * b), [(1, -2)])[0].x)
    with ProcessPoolExecutor(address=address) as ex:
        print("submit", ex.submit(lambda p: p.norm(), Point(-5)).result())
        print("exmap", list(ex.map(lambda x: Point(x).x + offset, range(3), chunksize=2)))
