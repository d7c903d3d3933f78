"""Run CPython's multiprocessing test suite against multiprocess.

CPython ships its own suite (``test._test_multiprocessing``) with the interpreter.
This runner loads it with ``multiprocessing`` aliased to ``multiprocess`` (see
``alias/sitecustomize.py``), once per start method, and prints per method::

    fork: ran=380 ok=339 fail=0 error=0 skip=41 rc=0

followed by the test classes that had failures or errors.

Usage::

    python tests/conformance/run.py [METHOD ...] [-k PATTERN ...] [--target multiprocessing]
        [--timeout SECONDS] [--logs DIR] [--python EXE]

``--target multiprocessing`` runs the same suite against the standard library,
for a baseline.  Exit status: 0 when every method ran (failures are reported, not
fatal) or when the interpreter has no ``test`` package (the run is skipped with a
message); 1 when a method timed out or the suite could not load; with
``--strict``, 1 also when any test failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("fork", "spawn", "forkserver")

# "test_name (module.Class.test_name) ... ok" (3.11+) or "(module.Class)" (3.9/3.10);
# a class whose setUpClass fails shows as "setUpClass (module.Class) ... ERROR" and
# counts as one error (its tests never run).
_START = re.compile(r"^(test\w*|setUpClass|tearDownClass) \(([\w.]+)\)")
_OUTCOMES = ("ok", "FAIL", "ERROR", "skipped", "expected failure", "unexpected success")
_OUTCOME = re.compile(r"(?:^|\.\.\. ?)(" + "|".join(_OUTCOMES) + r")\b")

_MODULE_TEMPLATE = """\
import unittest
import test._test_multiprocessing as suite

suite.install_tests_in_module_dict(globals(), {method!r})

if __name__ == "__main__":
    unittest.main()
"""


def parse_log(text: str) -> Iterator[tuple[str, str, str]]:
    """Yield (class, test, outcome) from a verbose unittest log.

    Children print to the same stream, so an outcome may come lines after its
    test name; a test without an outcome is reported as "unknown".
    """
    pending = None
    for line in text.splitlines():
        start = _START.match(line)
        if start:
            if pending:
                yield pending + ("unknown",)
            dotted = start.group(2).split(".")
            cls = dotted[-2] if dotted[-1] == start.group(1) else dotted[-1]
            pending = (cls, start.group(1))
            line = line[start.end() :]
        if pending:
            outcome = _OUTCOME.search(line.strip())
            if outcome and ("..." in line or line.strip().startswith(outcome.group(1))):
                yield pending + (outcome.group(1),)
                pending = None
    if pending:
        yield pending + ("unknown",)


def summarize(text: str, method: str, rc: int) -> tuple[str, list[str]]:
    """Return the summary line and one line per class with failures or errors."""
    counts: dict[str, int] = collections.Counter()
    bad: dict[str, list[str]] = collections.defaultdict(list)
    seen = set()
    for cls, test, outcome in parse_log(text):
        if (cls, test) in seen:
            continue
        seen.add((cls, test))
        counts[outcome] += 1
        if outcome in ("FAIL", "ERROR", "unknown", "unexpected success"):
            bad[cls].append(f"{test}:{outcome}")
    line = (
        f"{method}: ran={len(seen)} ok={counts['ok'] + counts['expected failure']} "
        f"fail={counts['FAIL']} error={counts['ERROR']} skip={counts['skipped']} "
        f"unfinished={counts['unknown']} rc={rc}"
    )
    classes = [f"  {cls}: {' '.join(sorted(tests))}" for cls, tests in sorted(bad.items())]
    return line, classes


def has_suite(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import test._test_multiprocessing"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def run_method(args: argparse.Namespace, method: str, workdir: str) -> tuple[str, list[str], int]:
    module = f"mpconformance_{method}"
    with open(os.path.join(workdir, module + ".py"), "w") as f:
        f.write(_MODULE_TEMPLATE.format(method=method))
    env = dict(os.environ)
    env["MP_CONFORMANCE_TARGET"] = args.target
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.join(HERE, "alias"), workdir, env.get("PYTHONPATH")) if p
    )
    cmd = [args.python, "-m", "unittest", "-v"]
    for pattern in args.k:
        cmd += ["-k", pattern]
    cmd.append(module)
    log_path = os.path.join(args.logs, f"{method}.log")
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(
                cmd,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=args.timeout,
                start_new_session=True,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    with open(log_path, errors="replace") as log:
        text = log.read()
    line, classes = summarize(text, method, rc)
    return line, classes, rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "methods",
        nargs="*",
        metavar="METHOD",
        help="start methods to run: fork, spawn, forkserver (default: all)",
    )
    parser.add_argument(
        "-k",
        action="append",
        default=[],
        help="only tests matching this substring/pattern (unittest -k); "
        "repeat it to select several",
    )
    parser.add_argument(
        "--target",
        default="multiprocess",
        help="package to test (multiprocessing for the stdlib baseline)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per method")
    parser.add_argument("--logs", default=os.path.join(tempfile.gettempdir(), "mp-conformance"))
    parser.add_argument("--strict", action="store_true", help="exit 1 if any test failed")
    args = parser.parse_args(argv)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown start method(s) {unknown}; choose from {', '.join(METHODS)}")

    if not has_suite(args.python):
        print(
            f"conformance: SKIPPED: {args.python} ships no test._test_multiprocessing "
            "(install the interpreter's test package, e.g. Debian's libpython3-testsuite)"
        )
        return 0
    os.makedirs(args.logs, exist_ok=True)
    status = 0
    with tempfile.TemporaryDirectory(prefix="mp-conformance-") as workdir:
        for method in methods:
            line, classes, rc = run_method(args, method, workdir)
            print(line, flush=True)
            for cls_line in classes:
                print(cls_line, flush=True)
            failed = " fail=0 error=0 " not in line or " unfinished=0 " not in line
            if rc == 124 or " ran=0 " in line or args.strict and (rc != 0 or failed):
                status = 1
    print(f"conformance logs: {args.logs}")
    return status


if __name__ == "__main__":
    sys.exit(main())
