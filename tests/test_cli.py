"""``python -m multiprocess``: usage on --help, the demo otherwise, under any start method."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "multiprocess", *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        stdin=subprocess.DEVNULL,
    )


DEMO_OUTPUT = [
    "hello world",
    "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]",
    "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
    "[0, 2, 6, 12, 20, 30, 42, 56, 72, 90]",
    "37",
]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_runs_nothing(flag):
    out = run_cli(flag)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")
    assert "--start-method {fork,spawn,forkserver}" in out.stdout
    assert "run a short demo" in out.stdout  # says what running it without options does
    assert "hello world" not in out.stdout  # ...without doing it


def test_version_and_bad_options():
    import multiprocess

    out = run_cli("--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"multiprocess {multiprocess.__version__}")
    out = run_cli("--start-method", "threads")
    assert out.returncode == 2
    assert "invalid choice: 'threads'" in out.stderr
    assert out.stdout == ""  # the demo did not run
    out = run_cli("--bogus")
    assert out.returncode == 2
    assert "unrecognized arguments: --bogus" in out.stderr


def test_no_options_runs_the_demo():
    out = run_cli()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for expected in DEMO_OUTPUT:
        assert expected in lines


def test_start_method_option_runs_the_demo_under_it(start_method):
    out = run_cli("--start-method", start_method)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"multiprocess {_version()}, start method {start_method!r}")
    for expected in DEMO_OUTPUT:
        assert expected in lines


def _version():
    import multiprocess

    return multiprocess.__version__
