"""Run CPython's concurrent.futures process-pool tests against multiprocess.futures.

CPython ships its ``concurrent.futures`` tests with the interpreter: one module
``test.test_concurrent_futures`` on 3.9-3.11, a package of modules on 3.12+.
This runner loads, once per start method, the test classes of that method whose
names start with ``ProcessPool`` (``ProcessPoolForkProcessPoolExecutorTest``,
``ProcessPoolSpawnExecutorDeadlockTest``, ...) and prints per method::

    fork: ran=131 ok=129 fail=0 error=0 skip=2 unfinished=0 rc=0 (95s)

followed by the test classes that had failures or errors.

How the suite is pointed at our executor (``--target multiprocess``, the
default): in the process that runs the tests,

* ``multiprocessing`` is aliased to ``multiprocess`` by ``alias/sitecustomize.py``
  (as for ``run.py``), in that process and in every child it starts: the tests'
  ``mp_context=multiprocessing.get_context(method)`` is then our context, which
  is what a user of ours passes;
* before the suite is imported, the generated test module sets
  ``concurrent.futures.ProcessPoolExecutor`` to ``multiprocess.futures.ProcessPoolExecutor``:
  the tests name the class as ``futures.ProcessPoolExecutor`` (their mixins
  read it once, at import), so every executor they build is ours.  Nothing
  else of ``concurrent.futures`` is replaced: ``Future``, ``wait``,
  ``as_completed`` and ``BrokenProcessPool`` stay the stdlib's, as our executor
  must work with them.

Tests that start a fresh interpreter (``assert_python_ok``, in the shutdown
tests) run it isolated (``-I``): it ignores PYTHONPATH, so those tests exercise
the stdlib's executor whatever the target.  ``--target stdlib`` runs the same
classes with nothing aliased or replaced, for the baseline.  When
``multiprocess.futures`` cannot be imported, the runner says so and exits 1
before running anything.

Usage::

    python tests/conformance/run_futures.py [METHOD ...] [-k PATTERN ...] [--target stdlib]
        [--timeout SECONDS] [--logs DIR] [--python EXE] [--gate] [--strict]

Exit status and ``--gate`` are those of ``run.py`` (see its docstring): the gate
runs the stdlib baseline on the tests we did not pass, reruns alone against us
those the stdlib passes, and fails on any left that ``differences_futures.txt``
does not list with its reason.  An interpreter without the suite (some builds
strip ``test``) is skipped with a message, exit status 0.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # loaded by path (the unit tests) rather than run as a script
    sys.path.insert(0, HERE)

from _conformance import Suite, main

# Formatted with the start method and the --target name.
_MODULE_TEMPLATE = """\
import importlib
import pkgutil
import unittest

METHOD = {method!r}
if {target!r} == "multiprocess":
    import concurrent.futures
    import multiprocess.futures

    concurrent.futures.ProcessPoolExecutor = multiprocess.futures.ProcessPoolExecutor

import test.test_concurrent_futures as package

if hasattr(package, "__path__"):  # 3.12+: a package of test modules
    MODULES = [
        importlib.import_module(package.__name__ + "." + info.name)
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("test_")
    ]
else:
    MODULES = [package]


def load_tests(loader, tests, pattern):
    suite = unittest.TestSuite()
    seen = set()
    for module in MODULES:
        for name, cls in sorted(vars(module).items()):
            if (
                name.startswith("ProcessPool")
                and isinstance(cls, type)
                and issubclass(cls, unittest.TestCase)
                and getattr(cls, "ctx", None) == METHOD
                and cls not in seen
            ):
                seen.add(cls)
                suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


if __name__ == "__main__":
    unittest.main()
"""

# MP_CONFORMANCE_TARGET for the alias: "multiprocessing" aliases nothing.
TARGETS = {"multiprocess": "multiprocess", "stdlib": "multiprocessing"}
# Without our executor, say so before running anything.
READY = {"multiprocess": "from multiprocess.futures import ProcessPoolExecutor"}
SUITE = Suite(
    "futures conformance", __doc__, "test.test_concurrent_futures", _MODULE_TEMPLATE, TARGETS, READY
)


if __name__ == "__main__":
    sys.exit(main(SUITE))
