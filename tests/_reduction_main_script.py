"""Run as a script: serializes things only a __main__ can hold, into argv[1].

Everything below the guard exists only when this file is __main__, as in a
user's script; a fresh interpreter loads the file and must still find it all.
"""

import functools
import sys

from multiprocess import reduction


def outside_guard(x):
    return x - OFFSET  # OFFSET is set only under the guard


if __name__ == "__main__":
    OFFSET = 100
    SCALE = 7

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def scaled(self):
            return Point(self.x * SCALE, self.y * SCALE)

    def scaled(x):
        return x * SCALE

    def is_point(p):
        return isinstance(p, Point)

    def make_counter(start):
        def counter():
            nonlocal start
            start += 1
            return start

        return counter

    counter = make_counter(10)
    counter()

    payload = {
        "scaled": scaled,
        "lambda": lambda x: x + SCALE,
        "outside_guard": outside_guard,
        "partial": functools.partial(scaled, 6),
        "counter": counter,
        "is_point": is_point,
        "points": [Point(1, 2), Point(3, 4)],
        "Point": Point,
    }
    with open(sys.argv[1], "wb") as f:
        f.write(reduction.dumps(payload, serializer=sys.argv[2] if len(sys.argv) > 2 else None))
