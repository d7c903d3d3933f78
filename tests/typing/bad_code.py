"""Wrong user code that mypy --strict must reject (tests/test_typing.py; never run).

Each line that ends with a comment ``E: <code>`` must get an error with that code
(``arg-type``, ``assignment``...; ``a|b``: either, as mypy versions differ), and no
other line any error.
"""

from __future__ import annotations

import ctypes

import multiprocess as mp
from multiprocess.futures import ProcessPoolExecutor
from multiprocess.queues import Queue


def square(x: int) -> str:
    return str(x * x)


def takes_int(value: int) -> None:
    pass


def wrong_calls() -> None:
    with mp.Pool(2) as p:
        p.map(square, "not ints")  # E: arg-type
        p.imap(square, ["a"])  # E: arg-type
        p.imap_unordered(square, [1.5], chunksize=4)  # E: arg-type
        p.apply_async(square, (1,), callback=takes_int)  # E: misc|arg-type
        p.map_async(square, [1], callback=takes_int)  # E: arg-type
        n: int = p.apply(square, (1,))  # E: assignment
        s: list[int] = p.map(square, [1])  # E: assignment|arg-type
        p.map(square, [1], progress=1.5)  # E: arg-type
        del n, s
    mp.get_context("spawn").Pool(task_timeout="soon")  # E: arg-type
    q: Queue[int] = mp.Queue()
    q.put("x")  # E: arg-type
    v = mp.Value(ctypes.c_int, 1)
    v.value = "x"  # E: assignment
    with ProcessPoolExecutor() as ex:
        ex.submit(square, "x")  # E: arg-type
        ex.submit(square, 1, 2)  # E: call-arg
        ex.map(square, ["x"])  # E: arg-type
    with mp.Manager() as m:
        m.list([1]).append("x")  # E: arg-type
        m.dict({"a": 1})["b"] = "x"  # E: assignment
