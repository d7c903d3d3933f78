"""Custom manager types: a class of this script served by a manager process, used from workers.

``BaseManager.register`` makes ``WordCounter`` a type the manager's server
process creates and owns; every process gets a proxy whose method calls run
on that one object.  The class is defined in ``__main__``: it reaches the
server (and the proxies reach the workers) under every start method, since
this package serializes with dill.  ``CounterProxy`` shows a hand-written
proxy type with a property next to the generated ``AutoProxy``.

    python examples/custom_manager.py [--start-method fork|spawn|forkserver]
"""

import argparse
import threading

import multiprocess as mp
from multiprocess.managers import BaseManager, BaseProxy


class WordCounter:
    """Counts words; lives in the manager's server process."""

    def __init__(self):
        # The server answers each client connection on its own thread.
        self._lock = threading.Lock()
        self._counts = {}

    def add(self, words):
        with self._lock:
            for word in words:
                self._counts[word] = self._counts.get(word, 0) + 1

    def most_common(self, n):
        with self._lock:
            return sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def total(self):
        with self._lock:
            return sum(self._counts.values())


class CounterProxy(BaseProxy):
    """A proxy written by hand: which methods it may call, and a property."""

    _exposed_ = ("add", "most_common", "total")

    def add(self, words):
        return self._callmethod("add", (words,))

    def most_common(self, n=3):
        return self._callmethod("most_common", (n,))

    @property
    def total(self):
        return self._callmethod("total")


class CountingManager(BaseManager):
    pass


CountingManager.register("WordCounter", WordCounter)  # an AutoProxy
CountingManager.register("Counter", WordCounter, proxytype=CounterProxy)


def count_lines(counter, lines):
    for line in lines:
        counter.add(line.lower().split())


TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "the dog sleeps",
    "a fox is quick and the dog is lazy",
    "quick quick said the fox",
]


def main(workers=3):
    with CountingManager() as manager:
        auto = manager.WordCounter()
        counter = manager.Counter()
        processes = [
            mp.Process(target=count_lines, args=(proxy, TEXT[i::workers]))
            for proxy in (auto, counter)
            for i in range(workers)
        ]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        print("proxy types:", type(auto).__name__, type(counter).__name__)
        print("words counted:", auto.total(), counter.total)
        print("most common:", counter.most_common(3))
        print("exit codes:", [p.exitcode for p in processes])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    main()
