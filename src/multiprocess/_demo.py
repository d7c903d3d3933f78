"""The demo behind ``python -m multiprocess``: the original README's examples.

Each example runs under the default start method (or the one given with
``--start-method``) and prints what it prints.  Examples whose part of the
package is not built yet say so instead of failing.  ``--help`` says all this.
"""

from __future__ import annotations

import argparse
import os
import sys

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


def _parser() -> argparse.ArgumentParser:
    titles = "\n".join(f"  - {title}" for title, _ in EXAMPLES)
    parser = argparse.ArgumentParser(
        prog=f"{os.path.basename(sys.executable)} -m multiprocess",
        description=(
            "multiprocess: a drop-in replacement for the standard library's\n"
            "multiprocessing, with dill serialization and a Pool that never hangs.\n\n"
            "Without options, run a short demo: the examples of the original\n"
            "multiprocess README, each printing what it computes:\n" + titles
        ),
        epilog="It starts a few processes and exits; nothing is written to disk.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--start-method",
        choices=mp.get_all_start_methods(),
        help=f"how the demo starts processes (default: {mp.get_start_method()})",
    )
    parser.add_argument("--version", action="version", version=f"multiprocess {mp.__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (``sys.argv[1:]`` if ``argv`` is None) and run the demo.

    Returns the exit status; ``--help``, ``--version`` and bad options exit
    through ``SystemExit`` as argparse does.
    """
    args = _parser().parse_args(argv)
    if args.start_method is not None:
        mp.set_start_method(args.start_method, force=True)
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
