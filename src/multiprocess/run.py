"""Run an unmodified ``multiprocessing`` program on ``multiprocess``.

Usage::

    python -m multiprocess.run script.py [args ...]
    python -m multiprocess.run -m module [args ...]

The program runs as ``python script.py`` (or ``python -m module``) would
run it, except that ``import multiprocessing`` (and every
``multiprocessing.X``) gives this package, and
``concurrent.futures.ProcessPoolExecutor`` is ours, for the whole process
and the children it starts: libraries that use them inside get dill
serialization (lambdas, closures, ``__main__`` classes) and the pool that
never hangs.  What it does not reach: processes started by other means
(``subprocess`` running another ``python``), and code that uses private
names of the standard library's modules that this package does not have.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import _alias

__all__ = ["main"]

_USAGE = (
    "usage: python -m multiprocess.run script.py [args ...]\n"
    "       python -m multiprocess.run -m module [args ...]\n"
    "Runs the program with `import multiprocessing` resolved to multiprocess.\n"
)


def main(argv: list[str] | None = None) -> None:
    """Run the program named by ``argv`` (default ``sys.argv[1:]``) with the alias installed.

    Exits with status 2 and a usage message when no program is named or
    the script cannot be opened; otherwise the program's own exit status.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(_USAGE)
        sys.exit(0 if args else 2)
    if args[0] == "-m":
        if len(args) < 2:
            sys.stderr.write("python -m multiprocess.run: -m needs a module name\n" + _USAGE)
            sys.exit(2)
        module, rest = args[1], args[2:]
        _alias.install()
        # As `python -m`: the current directory first on the path.
        sys.path[0] = os.getcwd()
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    if args[0].startswith("-"):
        sys.stderr.write(f"python -m multiprocess.run: unknown option {args[0]!r}\n" + _USAGE)
        sys.exit(2)
    script, rest = args[0], args[1:]
    if not os.path.isfile(script):
        sys.stderr.write(
            f"python -m multiprocess.run: can't open file {os.path.abspath(script)!r}: "
            "no such file\n"
        )
        sys.exit(2)
    _alias.install()
    # As `python script.py`: the script's folder first on the path.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
