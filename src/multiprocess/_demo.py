"""The demo behind ``python -m multiprocess``: the original README's examples.

Each example runs under the default start method and prints what it prints.
Examples whose part of the package is not built yet say so instead of failing.
"""

from __future__ import annotations

import multiprocess as mp

__all__ = ["main"]


def f(q):
    q.put("hello world")


def square(x):
    return x * x


def example_process_queue() -> None:
    q = mp.Queue()
    p = mp.Process(target=f, args=[q])
    p.start()
    print(q.get())
    p.join()


def example_condition() -> None:
    c = mp.Condition()
    print(c)
    print(c.acquire())
    print(c)
    c.release()


def example_manager() -> None:
    with mp.Manager() as manager:
        lst = manager.list(range(10))
        lst.reverse()
        print(lst)
        print(repr(lst))


def example_pool() -> None:
    with mp.Pool(4) as p:
        result = p.map_async(square, range(10))
        print(result.get(timeout=10))


def example_pool_lambda() -> None:
    with mp.Pool(4) as p:
        print(p.map(lambda x: (lambda y: y**2)(x) + x, range(10)))  # noqa: PLC3002 - the seed


def example_pipe_lambda() -> None:
    # Not in the original README: dill at work on a plain Pipe and Process.
    parent, child = mp.Pipe()
    p = mp.Process(target=_apply_from_pipe, args=(child,))
    p.start()
    parent.send((lambda y: y**2 + 1, 6))
    print(parent.recv())
    p.join()


def _apply_from_pipe(conn) -> None:
    fn, arg = conn.recv()
    conn.send(fn(arg))


EXAMPLES = [
    ("Process and Queue", example_process_queue),
    ("Condition", example_condition),
    ("Manager", example_manager),
    ("Pool.map_async", example_pool),
    ("Pool.map with a lambda (dill)", example_pool_lambda),
    ("a lambda through a Pipe to a Process (dill)", example_pipe_lambda),
]


def main() -> int:
    print(
        f"multiprocess {mp.__version__}, start method {mp.get_start_method()!r}, "
        f"serializer {mp.get_serializer()!r}"
    )
    for title, example in EXAMPLES:
        print(f"\n>>> {title}")
        try:
            example()
        except NotImplementedError as e:
            print(f"(not available yet: {e})")
    return 0
