"""The conformance runners (tests/conformance/run.py for the multiprocessing suite,
run_futures.py for concurrent.futures, their shared part in _conformance.py).

CI fails on a test of CPython's suite that passes against the stdlib and not against
us; these tests pin how logs are read and how the two runs are compared, per test,
and, for the futures runner, which test classes it loads and how it points them
at our executor.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib.util
import os
import sys

import pytest


def _load(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance", name + ".py")
    spec = importlib.util.spec_from_file_location("conformance_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load("run")
run_futures = _load("run_futures")
common = sys.modules["_conformance"]

# 3.11+ names the test in the parentheses; a child's output may split a line.
LOG_311 = """\
test_map (mpconformance_fork.WithProcessesTestPool.test_map) ... ok
test_unpickleable_result (mpconformance_fork.WithProcessesTestPoolWorkerErrors.\
test_unpickleable_result) ... FAIL
test_challengeresponse (mpconformance_fork.ChallengeResponseTest.test_challengeresponse) ...
  test_challengeresponse (mpconformance_fork.ChallengeResponseTest.test_challengeresponse) \
[algo=None] ... ERROR
test_abort (mpconformance_fork.WithProcessesTestBarrier.test_abort) ... child says hello
ok
test_array (mpconformance_fork.WithManagerTestArray.test_array) ... skipped 'no ctypes'
test_wait (mpconformance_fork.WithProcessesTestEvent.test_wait) ... expected failure
setUpClass (mpconformance_fork.WithManagerTestQueue) ... ERROR
test_hang (mpconformance_fork.WithProcessesTestQueue.test_hang) ...
"""

# 3.9/3.10 name only the class.
LOG_39 = """\
test_map (mpconformance_spawn.WithProcessesTestPool) ... ok
test_atexit (mpconformance_spawn.TestAtExit) ... FAIL
"""


def test_outcomes_reads_311_logs():
    assert common.outcomes(LOG_311) == {
        "WithProcessesTestPool.test_map": "ok",
        "WithProcessesTestPoolWorkerErrors.test_unpickleable_result": "FAIL",
        "ChallengeResponseTest.test_challengeresponse": "ERROR",
        "WithProcessesTestBarrier.test_abort": "ok",
        "WithManagerTestArray.test_array": "skipped",
        "WithProcessesTestEvent.test_wait": "expected failure",
        "WithManagerTestQueue.setUpClass": "ERROR",
        "WithProcessesTestQueue.test_hang": "unknown",
    }


def test_outcomes_reads_39_logs():
    assert common.outcomes(LOG_39) == {
        "WithProcessesTestPool.test_map": "ok",
        "TestAtExit.test_atexit": "FAIL",
    }


def test_not_passed_counts_skips_and_unfinished_tests():
    assert common.not_passed(common.outcomes(LOG_311)) == [
        "ChallengeResponseTest.test_challengeresponse",
        "WithManagerTestArray.test_array",
        "WithManagerTestQueue.setUpClass",
        "WithProcessesTestPoolWorkerErrors.test_unpickleable_result",
        "WithProcessesTestQueue.test_hang",
    ]


def test_regressions_compare_test_by_test_not_counts():
    # Same counts (one pass, one failure each side), different tests: one regression.
    ours = {"A.test_x": "ok", "A.test_y": "FAIL", "A.test_z": "skipped"}
    stdlib = {"A.test_x": "FAIL", "A.test_y": "ok", "A.test_z": "skipped"}
    assert common.regressions(ours, stdlib) == ["A.test_y"]


def test_regressions_count_tests_we_skipped_or_never_ran():
    stdlib = {"A.test_x": "ok", "B.test_y": "expected failure", "C.test_z": "ok"}
    ours = {"A.test_x": "skipped", "B.setUpClass": "ERROR"}
    assert common.regressions(ours, stdlib) == ["A.test_x", "B.test_y", "C.test_z"]


def test_k_patterns_select_exactly_the_named_tests():
    patterns = common.k_patterns(["A.test_map", "B.setUpClass", "B.tearDownClass", "A.test_map"])
    assert patterns == ["*.A.test_map", "*.B.*"]

    # unittest -k matches a pattern with a wildcard against the whole test id.
    def selected(test_id):
        return any(fnmatch.fnmatchcase(test_id, p) for p in patterns)

    assert selected("mpconformance_fork.A.test_map")
    assert not selected("mpconformance_fork.A.test_map_async")
    assert not selected("mpconformance_fork.XA.test_map")
    assert selected("mpconformance_fork.B.test_anything")


def test_judge_splits_flaky_deliberate_and_regressed():
    suspects = ["A.test_flaky", "A.test_lambda", "A.test_broken", "A.test_hangs"]
    rerun = {"A.test_flaky": "ok", "A.test_broken": "FAIL"}  # test_hangs: no outcome
    differences = {"A.test_lambda": "dill pickles lambdas"}
    assert common.judge(suspects, rerun, differences) == (
        ["A.test_flaky"],
        ["A.test_lambda"],
        ["A.test_broken", "A.test_hangs"],
    )


def test_parse_differences_wants_a_reason_per_entry():
    text = "# comment\n\nA.test_x  dill pickles lambdas  # trailing\n"
    assert common.parse_differences(text) == {"A.test_x": "dill pickles lambdas"}
    with pytest.raises(ValueError, match="line 1: expected 'Class.test  reason'"):
        common.parse_differences("A.test_x\n")
    with pytest.raises(ValueError, match="line 1"):
        common.parse_differences("test_x because\n")


@pytest.mark.parametrize("runner, most", [(run, 5), (run_futures, 12)])
def test_the_committed_differences_are_few_and_explained(runner, most):
    with open(runner.SUITE.differences) as f:
        differences = common.parse_differences(f.read())
    assert 0 < len(differences) <= most
    assert all(len(reason.split()) >= 5 for reason in differences.values())


# 3.13: the package's module in the id; the tests print their duration before the outcome.
FUTURES_LOG_313 = """\
test_map (test.test_concurrent_futures.test_process_pool.ProcessPoolForkProcessPoolExecutorTest.\
test_map) ... 0.12s ok
test_killed_child (test.test_concurrent_futures.test_process_pool.\
ProcessPoolForkProcessPoolExecutorTest.test_killed_child) ... 3.01s FAIL
test_idle_process_reuse_one (test.test_concurrent_futures.test_process_pool.\
ProcessPoolForkProcessPoolExecutorTest.test_idle_process_reuse_one) ... 0.01s skipped 'fork'
test_crash_big_data (test.test_concurrent_futures.test_deadlock.\
ProcessPoolForkExecutorDeadlockTest.test_crash_big_data) ... Fatal Python error: Segmentation fault
0.45s ok
test_hang (test.test_concurrent_futures.test_deadlock.ProcessPoolForkExecutorDeadlockTest.\
test_hang) ...
test_hang_gh83386 (test.test_concurrent_futures.test_shutdown.ProcessPoolForkProcessPoolShutdownTest.\
test_hang_gh83386)
shutdown(wait=False) doesn't hang at exit with running futures. ... skipped 'Hangs'
0.00s test_hang_gh94440 (test.test_concurrent_futures.test_shutdown.\
ProcessPoolForkProcessPoolShutdownTest.test_hang_gh94440)
shutdown(wait=True) doesn't hang when a future was submitted and ... 0.01s ok
"""

# 3.9/3.10: one module, the class only.
FUTURES_LOG_39 = """\
test_map (test.test_concurrent_futures.ProcessPoolSpawnProcessPoolExecutorTest) ... 0.20s ok
test_traceback (test.test_concurrent_futures.ProcessPoolSpawnProcessPoolExecutorTest) ... ERROR
"""


def test_outcomes_read_futures_logs_with_durations():
    assert common.outcomes(FUTURES_LOG_313) == {
        "ProcessPoolForkProcessPoolExecutorTest.test_map": "ok",
        "ProcessPoolForkProcessPoolExecutorTest.test_killed_child": "FAIL",
        "ProcessPoolForkProcessPoolExecutorTest.test_idle_process_reuse_one": "skipped",
        "ProcessPoolForkExecutorDeadlockTest.test_crash_big_data": "ok",
        "ProcessPoolForkExecutorDeadlockTest.test_hang": "unknown",
        # A docstring's first line comes between the name and the outcome; a
        # skipped test's duration, before the next test's name.
        "ProcessPoolForkProcessPoolShutdownTest.test_hang_gh83386": "skipped",
        "ProcessPoolForkProcessPoolShutdownTest.test_hang_gh94440": "ok",
    }
    assert common.outcomes(FUTURES_LOG_39) == {
        "ProcessPoolSpawnProcessPoolExecutorTest.test_map": "ok",
        "ProcessPoolSpawnProcessPoolExecutorTest.test_traceback": "ERROR",
    }
    line, classes = common.summarize(FUTURES_LOG_313, "fork", 1)
    assert line == "fork: ran=7 ok=3 fail=1 error=0 skip=2 unfinished=1 rc=1"
    assert classes == [
        "  ProcessPoolForkExecutorDeadlockTest: test_hang:unknown",
        "  ProcessPoolForkProcessPoolExecutorTest: test_killed_child:FAIL",
    ]


def test_differences_name_a_test_for_every_start_method_with_a_wildcard():
    differences = common.parse_differences(
        "ProcessPool*ProcessPoolExecutorTest.test_killed_child  one dead worker breaks all\n"
    )
    suspects = [
        "ProcessPoolForkProcessPoolExecutorTest.test_killed_child",
        "ProcessPoolForkserverProcessPoolExecutorTest.test_killed_child",
        "ProcessPoolForkProcessPoolExecutorTest.test_killed_children",
        "ProcessPoolForkExecutorDeadlockTest.test_killed_child",
    ]
    flaky, deliberate, regressed = common.judge(suspects, {}, differences)
    assert (flaky, deliberate) == ([], suspects[:2])
    assert regressed == suspects[2:]
    with pytest.raises(ValueError, match="line 1"):
        common.parse_differences("ProcessPool*.test_x?  wildcards only in the class\n")


# A stand-in for CPython's suite: test classes of every kind the real one has.
_FAKE_TESTS = """\
import unittest
from concurrent import futures


class ProcessPoolForkMixin:
    ctx = "fork"


class ProcessPoolForkserverMixin:
    ctx = "forkserver"


def make(mixin, name):
    def test_executor(self):
        print("EXECUTOR", futures.ProcessPoolExecutor.__module__)

    return type(name, (mixin, unittest.TestCase), {"test_executor": test_executor})


ProcessPoolForkThingTest = make(ProcessPoolForkMixin, "ProcessPoolForkThingTest")
ProcessPoolForkserverThingTest = make(ProcessPoolForkserverMixin, "ProcessPoolForkserverThingTest")


class ThreadPoolThingTest(unittest.TestCase):
    def test_executor(self):
        pass


class FailingInitializerResourcesTest(unittest.TestCase):
    def test_executor(self):
        pass
"""


def _fake_suite(tmp_path, layout):
    """Write a fake test.test_concurrent_futures (module or package) under tmp_path."""
    root = tmp_path / layout
    (root / "test").mkdir(parents=True)
    (root / "test" / "__init__.py").write_text("")
    if layout == "module":  # 3.9-3.11
        (root / "test" / "test_concurrent_futures.py").write_text(_FAKE_TESTS)
    else:  # 3.12+: the classes spread over test_*.py modules, helpers beside them
        package = root / "test" / "test_concurrent_futures"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "util.py").write_text("raise AssertionError('util is not a test module')\n")
        (package / "test_things.py").write_text(_FAKE_TESTS)
        (package / "test_more.py").write_text(
            "from .test_things import ProcessPoolForkThingTest as ProcessPoolForkAgainTest\n"
        )
    return root


def _args(tmp_path, python=sys.executable):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return argparse.Namespace(python=python, timeout=120, logs=str(logs), k=[])


@pytest.mark.parametrize("layout", ["module", "package"])
def test_the_generated_module_loads_the_process_pool_classes_of_one_method(
    tmp_path, monkeypatch, layout
):
    root = _fake_suite(tmp_path, layout)
    monkeypatch.setenv("PYTHONPATH", str(root))
    workdir = tmp_path / "work"
    workdir.mkdir()
    for method, cls in [
        ("fork", "ProcessPoolForkThingTest"),
        ("forkserver", "ProcessPoolForkserverThingTest"),
    ]:
        text, rc = common.run_suite(
            run_futures.SUITE, _args(tmp_path), method, str(workdir), "stdlib", [], "x.log"
        )
        # The same class imported under a second name runs once.
        assert common.outcomes(text) == {f"{cls}.test_executor": "ok"}, text
        assert rc == 0
        assert "EXECUTOR concurrent.futures.process" in text


def test_the_generated_module_puts_our_executor_in_concurrent_futures(tmp_path, monkeypatch):
    # Stand-ins for the suite and for multiprocess.futures: what the tests see as
    # concurrent.futures.ProcessPoolExecutor under --target multiprocess.
    root = _fake_suite(tmp_path, "package")
    ours = tmp_path / "ours"
    (ours / "multiprocess").mkdir(parents=True)
    (ours / "multiprocess" / "__init__.py").write_text("")
    (ours / "multiprocess" / "futures.py").write_text("class ProcessPoolExecutor:\n    pass\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ours), str(root)]))
    workdir = tmp_path / "work"
    workdir.mkdir()
    text, _rc = common.run_suite(
        run_futures.SUITE, _args(tmp_path), "fork", str(workdir), "multiprocess", [], "x.log"
    )
    assert common.outcomes(text) == {"ProcessPoolForkThingTest.test_executor": "ok"}, text
    assert "EXECUTOR multiprocess.futures" in text


def test_without_our_executor_the_runner_fails_clearly_before_running(tmp_path, capsys):
    suite = dataclasses.replace(
        run_futures.SUITE,
        module="sys",
        check={"multiprocess": "from multiprocess import no_such_executor_module"},
    )
    status = common.main(suite, ["fork", "--logs", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "futures conformance: FAILED: cannot test 'multiprocess'" in out
    assert "no_such_executor_module" in out
    assert "--target stdlib runs the same tests against the stdlib" in out
    assert os.listdir(tmp_path) == []  # nothing ran


def test_an_interpreter_without_the_suite_is_skipped_with_a_message(tmp_path, capsys):
    suite = dataclasses.replace(run_futures.SUITE, module="test.no_such_suite")
    assert common.main(suite, ["--logs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("futures conformance: SKIPPED:")
    assert "ships no test.no_such_suite (install the interpreter's test package" in out
