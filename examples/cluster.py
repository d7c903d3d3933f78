"""From a laptop to a cluster: the same Pool code on a local Pool and on Dask.

``multiprocess.dask.Pool`` has the API of ``multiprocess.Pool`` and runs the
tasks on a Dask cluster.  Without ``address=`` it starts its own
``LocalCluster`` of worker processes on 127.0.0.1 (what this example does, so
that it runs anywhere the ``dask`` extra is installed); with
``address="tcp://scheduler:8786"`` the very same code runs on a real cluster.
A lambda, a closure and a class defined in this script cross to the Dask
workers, which never import this script.

    python examples/cluster.py [--start-method fork|spawn|forkserver]

(the start method is that of the local Pool it is compared with).  Needs the
``dask`` extra: ``pip install "multiprocess[dask]"``.
"""

import argparse
import logging

import multiprocess as mp
from multiprocess.dask import Pool as ClusterPool


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def make_scaler(k):
    def scale(x):
        return k * x

    return scale


def run(pool):
    """The job, written once for any Pool."""
    squares = pool.map(lambda x: x * x, range(10))
    scaled = pool.map(make_scaler(3), range(5), chunksize=2)
    norms = pool.starmap(lambda x, y: Point(x, y).norm2(), [(3, 4), (6, 8)])
    total = sum(pool.imap_unordered(abs, range(-500, 500), chunksize=100))
    return squares, scaled, norms, total


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", default=None)
    args = parser.parse_args()
    # Dask's own INFO messages (cluster start and stop) are not this example's output.
    logging.getLogger("distributed").setLevel(logging.ERROR)

    with mp.get_context(args.start_method).Pool(2) as pool:
        local = run(pool)
    with ClusterPool(2) as pool:  # or ClusterPool(address="tcp://scheduler:8786")
        on_dask = run(pool)
    squares, scaled, norms, total = on_dask
    print("squares:", squares)
    print("scaled:", scaled)
    print("norms:", norms)
    print("total:", total)
    print("same as the local Pool:", on_dask == local)
