"""Run CPython's multiprocessing test suite against multiprocess.

CPython ships its own suite (``test._test_multiprocessing``) with the interpreter.
This runner loads it with ``multiprocessing`` aliased to ``multiprocess`` (see
``alias/sitecustomize.py``), once per start method, and prints per method::

    fork: ran=380 ok=339 fail=0 error=0 skip=41 rc=0

followed by the test classes that had failures or errors.

Usage::

    python tests/conformance/run.py [METHOD ...] [-k PATTERN ...] [--target multiprocessing]
        [--timeout SECONDS] [--logs DIR] [--python EXE] [--gate]

``--target multiprocessing`` runs the same suite against the standard library,
for a baseline.  Exit status: 0 when every method ran (failures are reported, not
fatal) or when the interpreter has no ``test`` package (the run is skipped with a
message); 1 when a method timed out or the suite could not load; with
``--strict``, 1 also when any test failed.

``--gate`` (what CI runs) judges us by this interpreter's own stdlib, test by test:

1. run the whole suite against multiprocess;
2. run the tests we did not pass (failed, errored, skipped, unfinished) against the
   standard library, in this same run: a test we pass cannot be a regression, so
   the baseline needs only these, and it holds on any machine;
3. a test the stdlib passes and we do not is rerun alone against us: the suite has
   timing-sensitive tests that fail under load, even against the stdlib, so one
   that passes on the rerun is reported as flaky, not as a regression;
4. exit 1 on any test still failing, unless ``differences.txt`` lists it as a
   deliberate difference (with its reason).

The running, log reading and judging are shared with ``run_futures.py`` (the
``concurrent.futures`` suite): see ``_conformance.py``.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # loaded by path (the unit tests) rather than run as a script
    sys.path.insert(0, HERE)

from _conformance import Suite, main

_MODULE_TEMPLATE = """\
import unittest
import test._test_multiprocessing as suite

suite.install_tests_in_module_dict(globals(), {method!r})

if __name__ == "__main__":
    unittest.main()
"""

TARGETS = {"multiprocess": "multiprocess", "multiprocessing": "multiprocessing"}
SUITE = Suite("conformance", __doc__, "test._test_multiprocessing", _MODULE_TEMPLATE, TARGETS)


if __name__ == "__main__":
    sys.exit(main(SUITE))
