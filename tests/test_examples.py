"""Every script in ``examples/`` runs, under each start method, and prints what it should.

Each example is a program of its own: it runs here as a subprocess (a real
``__main__``, a fresh interpreter) with ``--start-method``, must exit with 0
and nothing on stderr within its time limit, and its output is checked line by
line against what the example claims to show.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import START_METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
# Seconds per run: each takes a few on an idle machine (spawn re-imports numpy
# in every child of large_arrays); the margin is for a loaded CI machine.
TIMEOUT = 90


def _run_example(name: str, start_method: str) -> list[str]:
    """Run ``examples/<name>``; return its stdout lines once it passed exit code and stderr."""
    args = [sys.executable, os.path.join(EXAMPLES, name), "--start-method", start_method]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group: a hang kills every child too
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{name} under {start_method} ran past {TIMEOUT} s\n{stdout}\n{stderr}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}\n{stdout}\n{stderr}"
    assert stderr == "", f"{name} wrote to stderr:\n{stderr}"
    return stdout.splitlines()


def check_queue_workers(lines: list[str]) -> None:
    # The first results, as the workers reported them, then the whole count.
    for line in lines[:3]:
        assert re.fullmatch(r"Process-\d+ says that mul\((\d+), 7\) = \d+", line), line
        a = int(re.search(r"mul\((\d+)", line).group(1))
        assert line.endswith(f"= {a * 7}")
    # 20 products (7 * 0..19: 1330) and 10 sums (0..9 + 8: 125).
    assert "results: 30, sum: 1455" in lines
    assert "exit codes: [0, 0, 0, 0]" in lines


def check_custom_manager(lines: list[str]) -> None:
    assert lines == [
        "proxy types: AutoProxy[WordCounter] CounterProxy",
        # Both counters saw every word of the four lines, from three workers each.
        "words counted: 26 26",
        "most common: [('the', 5), ('quick', 4), ('dog', 3)]",
        "exit codes: [0, 0, 0, 0, 0, 0]",
    ]


def check_pool_task_control(lines: list[str]) -> None:
    expected_items = [
        f"item {i}: timed out (TaskTimeoutError)" if i == 3 else f"item {i}: {i * i}"
        for i in range(8)
    ]
    assert lines[:8] == expected_items
    assert lines[8] == "progress: 8/8 items"  # the last call of the callable
    assert lines[9] == "map failed: ValueError; note: in work(item 2 of map: -3)"
    assert lines[-1] == "apply: 25"
    # docs/task-control.rst shows this output: every line it shows is printed.
    with open(os.path.join(ROOT, "docs", "task-control.rst"), encoding="utf-8") as f:
        page = f.read()
    shown = page.split("It prints", 1)[1].split("\n\n", 2)[1].splitlines()
    shown = [line.strip() for line in shown if line.strip() != "..."]
    assert len(shown) >= 5 and [line for line in shown if line not in lines] == []


def check_http_server(lines: list[str]) -> None:
    for i, line in enumerate(lines[:3]):
        assert re.fullmatch(rf"200 pid \d+ served /page/{i}", line), line
    assert "12 requests, 12 answered with 200" in lines
    assert "served by workers of this example: True" in lines
    # Each /stop reached a different worker, and every worker ended on it.
    assert "stopped workers: 3" in lines
    assert lines[-1] == "exit codes: [0, 0, 0]"


def check_large_arrays(lines: list[str]) -> None:
    assert lines == [
        "queue: sent 64 MiB, column sums match: True",
        "shared memory: 4 workers scaled 64 MiB in place, every element is 2.0: True",
    ]


def check_asyncio_pool(lines: list[str]) -> None:
    assert lines == [
        "apply_async: 1024",
        "gather: [0, 1, 4, 9, 16] [0, 1, 8, 27, 64]",
        "primes below 50: 15",
        "await raised: ValueError",
        "wait_for timed out: the call is cancelled",
        "the loop kept running: True",
        "ThreadPool: (6, [1, 2, 3])",
    ]


def check_cluster(lines: list[str]) -> None:
    assert lines == [
        "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
        "scaled: [0, 3, 6, 9, 12]",
        "norms: [25, 100]",
        "total: 250000",
        "same as the local Pool: True",
    ]


CHECKS = {
    "queue_workers.py": check_queue_workers,
    "custom_manager.py": check_custom_manager,
    "pool_task_control.py": check_pool_task_control,
    "http_server.py": check_http_server,
    "large_arrays.py": check_large_arrays,
    "asyncio_pool.py": check_asyncio_pool,
    "cluster.py": check_cluster,
}


def test_every_example_is_checked_and_listed():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == sorted(CHECKS), "a new example needs its check in CHECKS"
    with open(os.path.join(EXAMPLES, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert [s for s in scripts if f"`{s}`" not in readme] == []


@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_and_prints_its_results(name, start_method):
    CHECKS[name](_run_example(name, start_method))
