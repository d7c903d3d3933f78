"""What the conformance runners share: running a CPython test suite per start method,
reading its verbose log test by test, and the gate that judges us by the stdlib.

``run.py`` (the multiprocessing suite) and ``run_futures.py`` (the
``concurrent.futures`` process-pool suite) each describe their suite with a
:class:`Suite` and hand it to :func:`main`; everything else lives here.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import fnmatch
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
ALIAS = os.path.join(HERE, "alias")
METHODS = ("fork", "spawn", "forkserver")
PASSED = ("ok", "expected failure")

# "test_name (module.Class.test_name) ... ok" (3.11+) or "(module.Class)" (3.9/3.10);
# a class whose setUpClass fails shows as "setUpClass (module.Class) ... ERROR" and
# counts as one error (its tests never run).  The concurrent.futures tests print
# their duration before the outcome ("... 0.12s ok"), or, for a skipped test,
# before the next test's name ("0.00s test_x (...)").
_START = re.compile(r"^(?:\d+\.\d+s )?(test\w*|setUpClass|tearDownClass) \(([\w.]+)\)")
_OUTCOMES = ("ok", "FAIL", "ERROR", "skipped", "expected failure", "unexpected success")
_OUTCOME = re.compile(r"(?:^|\.\.\. ?)(?:\d+\.\d+s )?(" + "|".join(_OUTCOMES) + r")\b")


@dataclasses.dataclass(frozen=True)
class Suite:
    """One CPython test suite, as a runner sees it.

    ``module`` is the suite's module in CPython's ``test`` package (an interpreter
    without it is skipped); ``template`` is the source of the module unittest
    loads, formatted with ``method`` and ``target``; ``targets`` maps each
    ``--target`` name, ours first and the stdlib's second, to the
    ``MP_CONFORMANCE_TARGET`` the alias (``alias/sitecustomize.py``) gets;
    ``check`` maps a target to Python code that must run before that target
    can be tested (it fails: the run fails, with the error it printed).  The
    differences file is ``differences.txt`` for the suite named "conformance",
    else ``differences_<first word of the name>.txt``, beside this file.
    """

    name: str
    doc: str
    module: str
    template: str
    targets: dict[str, str]
    check: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def differences(self) -> str:
        word = self.name.split()[0]
        suffix = "" if word == "conformance" else "_" + word
        return os.path.join(HERE, f"differences{suffix}.txt")

    @property
    def ours(self) -> str:
        return next(iter(self.targets))

    @property
    def stdlib(self) -> str:
        return list(self.targets)[1]

    @property
    def prefix(self) -> str:
        """Names the generated module ("mpconformance_fork") and the default log folder."""
        return "mp" + self.name.replace(" ", "")


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
            if outcome and ("..." in line or line.strip().startswith(outcome.group(0))):
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


def outcomes(text: str) -> dict[str, str]:
    """Map "Class.test" to its first outcome in a verbose unittest log."""
    found: dict[str, str] = {}
    for cls, test, outcome in parse_log(text):
        found.setdefault(f"{cls}.{test}", outcome)
    return found


def not_passed(results: dict[str, str]) -> list[str]:
    """The tests of a run that did not pass (failed, errored, skipped or unfinished)."""
    return sorted(test for test, outcome in results.items() if outcome not in PASSED)


def regressions(ours: dict[str, str], stdlib: dict[str, str]) -> list[str]:
    """Tests that passed against the stdlib and not against us (missing = not passed)."""
    return sorted(
        t for t, outcome in stdlib.items() if outcome in PASSED and ours.get(t) not in PASSED
    )


def listed(test: str, differences: dict[str, str]) -> bool:
    """Whether a differences file lists this "Class.test" (its Class may hold "*")."""
    return any(fnmatch.fnmatchcase(test, entry) for entry in differences)


def judge(
    suspects: list[str], rerun: dict[str, str], differences: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """Split the suspects (stdlib passes, we did not) into (flaky, deliberate, regressed).

    Flaky: passed when rerun against us.  Deliberate: listed in the differences file.
    """
    deliberate = [t for t in suspects if listed(t, differences)]
    flaky = [t for t in suspects if t not in deliberate and rerun.get(t) in PASSED]
    regressed = [t for t in suspects if t not in deliberate and t not in flaky]
    return flaky, deliberate, regressed


def k_patterns(tests: list[str]) -> list[str]:
    """unittest -k patterns that select exactly these "Class.test" names.

    A pattern with a wildcard is matched against the whole test id
    ("module.Class.test"); a failed setUpClass/tearDownClass reruns its class.
    """
    patterns = []
    for test in tests:
        cls, name = test.split(".")
        pattern = f"*.{cls}.*" if name in ("setUpClass", "tearDownClass") else f"*.{cls}.{name}"
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def parse_differences(text: str) -> dict[str, str]:
    """Parse a differences file: "Class.test  reason" per line; "#" starts a comment.

    "*" in the class stands for any characters: ``ProcessPool*ExecutorTest.test_x``
    names the test for every start method.

    Raises ValueError on an entry without a reason or not of the form Class.test.
    """
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        test, _, reason = line.partition(" ")
        if not re.fullmatch(r"[\w*]+\.\w+", test) or not reason.strip():
            raise ValueError(
                f"differences.txt line {number}: expected 'Class.test  reason', got {line!r}"
            )
        entries[test] = reason.strip()
    return entries


def _probe(python: str, code: str, alias: str | None = None) -> tuple[bool, str]:
    """Run code in python (with multiprocessing aliased to alias, if given);
    return (succeeded, the last line of its stderr)."""
    env = dict(os.environ)
    if alias:
        env["MP_CONFORMANCE_TARGET"] = alias
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ALIAS, env.get("PYTHONPATH")) if p)
    probe = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    lines = probe.stderr.strip().splitlines()
    return probe.returncode == 0, lines[-1] if lines else f"exit status {probe.returncode}"


def run_suite(
    suite: Suite,
    args: argparse.Namespace,
    method: str,
    workdir: str,
    target: str,
    patterns: list[str],
    log_name: str,
) -> tuple[str, int]:
    """Run the suite (or the tests matching patterns) once; return its log and exit code."""
    module = f"{suite.prefix}_{method}"
    with open(os.path.join(workdir, module + ".py"), "w") as f:
        f.write(suite.template.format(method=method, target=target))
    env = dict(os.environ)
    env["MP_CONFORMANCE_TARGET"] = suite.targets[target]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ALIAS, workdir, env.get("PYTHONPATH")) if p)
    # -X faulthandler: on a time-out the suite gets SIGABRT first, and dumps the
    # stack of each of its threads into the log (a hang, at exit too, says where).
    cmd = [args.python, "-X", "faulthandler", "-m", "unittest", "-v"]
    for pattern in patterns:
        cmd += ["-k", pattern]
    cmd.append(module)
    log_path = os.path.join(args.logs, log_name)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = proc.wait(args.timeout)
        except subprocess.TimeoutExpired:
            rc = 124
            log.write(f"\nconformance: TIMED OUT after {args.timeout:g} s\n")
            log.flush()
            try:
                os.kill(proc.pid, signal.SIGABRT)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        finally:
            # The whole session: children the suite left behind (hung ones
            # included) must not run on and slow down what comes next.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    with open(log_path, errors="replace") as log:
        return log.read(), rc


def gate_method(
    suite: Suite,
    args: argparse.Namespace,
    method: str,
    workdir: str,
    differences: dict[str, str],
) -> bool:
    """Judge one start method against this interpreter's stdlib; print why; True if it passes."""
    started = time.monotonic()
    text, rc = run_suite(suite, args, method, workdir, suite.ours, args.k, f"{method}.log")
    line, classes = summarize(text, method, rc)
    print(f"{line} ({time.monotonic() - started:.0f}s)", flush=True)
    for cls_line in classes:
        print(cls_line, flush=True)
    ours = outcomes(text)
    if rc == 124 or not ours:
        print(f"  {method}: FAILED: the suite timed out or ran no test (log: {args.logs})")
        if rc == 124:
            # Where it hung: the stacks faulthandler wrote on SIGABRT, for CI's output.
            dump = text[text.rfind("conformance: TIMED OUT") :].splitlines()
            print("\n".join("    " + line for line in dump[:120]), flush=True)
        return False
    candidates = not_passed(ours)
    stdlib: dict[str, str] = {}
    if candidates:
        started = time.monotonic()
        # Only the tests we did not pass: a short run, unless the stdlib hangs
        # on one of them (its own deadlock tests do, now and then).
        limit = min(args.timeout, 60 + 15 * len(candidates))
        text, rc = run_suite(
            suite,
            argparse.Namespace(**{**vars(args), "timeout": limit}),
            method,
            workdir,
            suite.stdlib,
            k_patterns(candidates),
            f"{method}-stdlib.log",
        )
        stdlib = outcomes(text)
        print(
            f"  stdlib baseline on the {len(candidates)} tests we did not pass: ran={len(stdlib)} "
            f"ok={len(stdlib) - len(not_passed(stdlib))} rc={rc} "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )
        lost = [t for t in candidates if t not in stdlib and not t.endswith("Class")]
        if rc == 124:
            # What the stdlib did not finish, it did not pass: not a regression.
            print(
                f"  the stdlib run timed out after {limit} s; unfinished: {' '.join(lost) or '-'}"
            )
            stdlib.update(dict.fromkeys(lost, "TIMEOUT"))
        elif lost:
            print(f"  {method}: FAILED: the stdlib run missed {' '.join(lost)}")
            return False
    suspects = regressions(ours, stdlib)
    rerun: dict[str, str] = {}
    to_rerun = [t for t in suspects if not listed(t, differences)]
    if to_rerun:
        text, rc = run_suite(
            suite, args, method, workdir, suite.ours, k_patterns(to_rerun), f"{method}-rerun.log"
        )
        rerun = outcomes(text)
    flaky, deliberate, regressed = judge(suspects, rerun, differences)
    if to_rerun:
        print(f"  rerun alone against us: {' '.join(to_rerun)}", flush=True)
        print(f"    passed on the rerun (flaky, not counted): {' '.join(flaky) or '-'}")
    if deliberate:
        names = os.path.basename(suite.differences)
        print(f"  deliberate differences ({names}): {' '.join(deliberate)}")
    if regressed:
        print(f"  {method}: REGRESSIONS: {' '.join(regressed)}")
    else:
        print(f"  {method}: no regression")
    return not regressed


def main(suite: Suite, argv: list[str] | None = None) -> int:
    """The command line every runner shares (see run.py's docstring)."""
    parser = argparse.ArgumentParser(description=suite.doc.split("\n\n")[0])
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
        default=suite.ours,
        choices=sorted(suite.targets),
        help=f"what to test ({suite.stdlib} for the stdlib baseline)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per method")
    parser.add_argument("--logs", default=os.path.join(tempfile.gettempdir(), suite.prefix))
    parser.add_argument("--strict", action="store_true", help="exit 1 if any test failed")
    parser.add_argument(
        "--gate",
        action="store_true",
        help="exit 1 on a test that passes against the stdlib but not against us "
        f"(reruns it first; tests listed in {os.path.basename(suite.differences)} are allowed)",
    )
    args = parser.parse_args(argv)
    # A shell starts a background job with SIGINT ignored, and the suites run
    # here inherit it: their ^C tests would wait forever.  Run them as from a
    # terminal (the interpreters we start get the default handler back).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown start method(s) {unknown}; choose from {', '.join(METHODS)}")

    if not _probe(args.python, f"import {suite.module}")[0]:
        print(
            f"{suite.name}: SKIPPED: {args.python} ships no {suite.module} "
            "(install the interpreter's test package, e.g. Debian's libpython3-testsuite)"
        )
        return 0
    target = suite.ours if args.gate else args.target
    if target in suite.check:
        ready, error = _probe(args.python, suite.check[target], suite.targets[target])
        if not ready:
            print(
                f"{suite.name}: FAILED: cannot test {target!r} with {args.python}: {error}\n"
                f"  (--target {suite.stdlib} runs the same tests against the stdlib)"
            )
            return 1
    os.makedirs(args.logs, exist_ok=True)
    status = 0
    with tempfile.TemporaryDirectory(prefix=suite.prefix + "-") as workdir:
        if args.gate:
            with open(suite.differences) as f:
                differences = parse_differences(f.read())
            failed = [m for m in methods if not gate_method(suite, args, m, workdir, differences)]
            print(f"{suite.name} logs: {args.logs}")
            return 1 if failed else 0
        for method in methods:
            started = time.monotonic()
            text, rc = run_suite(suite, args, method, workdir, target, args.k, f"{method}.log")
            line, classes = summarize(text, method, rc)
            print(f"{line} ({time.monotonic() - started:.0f}s)", flush=True)
            for cls_line in classes:
                print(cls_line, flush=True)
            failed = " fail=0 error=0 " not in line or " unfinished=0 " not in line
            if rc == 124 or " ran=0 " in line or args.strict and (rc != 0 or failed):
                status = 1
    print(f"{suite.name} logs: {args.logs}")
    return status
