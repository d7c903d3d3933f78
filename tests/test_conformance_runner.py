"""The conformance gate's pure logic (tests/conformance/run.py): parsing and comparison.

CI fails on a test of CPython's suite that passes against the stdlib and not against
us; these tests pin how logs are read and how the two runs are compared, per test.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance", "run.py")
_spec = importlib.util.spec_from_file_location("conformance_run", _PATH)
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

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
    assert run.outcomes(LOG_311) == {
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
    assert run.outcomes(LOG_39) == {
        "WithProcessesTestPool.test_map": "ok",
        "TestAtExit.test_atexit": "FAIL",
    }


def test_not_passed_counts_skips_and_unfinished_tests():
    assert run.not_passed(run.outcomes(LOG_311)) == [
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
    assert run.regressions(ours, stdlib) == ["A.test_y"]


def test_regressions_count_tests_we_skipped_or_never_ran():
    stdlib = {"A.test_x": "ok", "B.test_y": "expected failure", "C.test_z": "ok"}
    ours = {"A.test_x": "skipped", "B.setUpClass": "ERROR"}
    assert run.regressions(ours, stdlib) == ["A.test_x", "B.test_y", "C.test_z"]


def test_k_patterns_select_exactly_the_named_tests():
    patterns = run.k_patterns(["A.test_map", "B.setUpClass", "B.tearDownClass", "A.test_map"])
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
    assert run.judge(suspects, rerun, differences) == (
        ["A.test_flaky"],
        ["A.test_lambda"],
        ["A.test_broken", "A.test_hangs"],
    )


def test_parse_differences_wants_a_reason_per_entry():
    text = "# comment\n\nA.test_x  dill pickles lambdas  # trailing\n"
    assert run.parse_differences(text) == {"A.test_x": "dill pickles lambdas"}
    with pytest.raises(ValueError, match="line 1: expected 'Class.test  reason'"):
        run.parse_differences("A.test_x\n")
    with pytest.raises(ValueError, match="line 1"):
        run.parse_differences("test_x because\n")


def test_the_committed_differences_are_few_and_explained():
    with open(run.DIFFERENCES) as f:
        differences = run.parse_differences(f.read())
    assert 0 < len(differences) <= 5
    assert all(len(reason.split()) >= 5 for reason in differences.values())
