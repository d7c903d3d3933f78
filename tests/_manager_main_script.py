"""Run as a script: a dict proxy holding a lambda and __main__-defined objects.

``python _manager_main_script.py METHOD`` stores in a manager's dict a lambda, a
class defined in this __main__ and an instance of it, then a child process
(started with METHOD) reads them back and uses them.  Prints one JSON line.
Under spawn and forkserver neither the manager's server nor the child has this
__main__: the objects travel by value.
"""

import json
import sys

import multiprocess as mp

if __name__ == "__main__":
    FACTOR = 3

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm2(self):
            return self.x * self.x + self.y * self.y

        def scaled(self):
            return Point(self.x * FACTOR, self.y * FACTOR)

    def reader(d, out):
        point = d["point"]
        out.put(
            {
                "lambda": d["lambda"](4),
                "norm2": point.norm2(),
                "scaled": point.scaled().norm2(),
                "made": d["cls"](1, 2).norm2(),
                "nested": d["nested"]["fs"][1](10),
            }
        )
        d["from_child"] = lambda s: s * FACTOR

    ctx = mp.get_context(sys.argv[1])
    with ctx.Manager() as manager:
        d = manager.dict()
        d["lambda"] = lambda x: x * FACTOR
        d["point"] = Point(3, 4)
        d["cls"] = Point
        d["nested"] = {"fs": [lambda x: x, lambda x: x + FACTOR]}
        out = ctx.Queue()
        p = ctx.Process(target=reader, args=(d, out))
        p.start()
        result = out.get(timeout=60)
        p.join(60)
        result["exitcode"] = p.exitcode
        result["from_child"] = d["from_child"]("ab")
        result["point_back"] = d["point"].norm2()
    print(json.dumps(result))
