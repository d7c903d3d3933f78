"""Real clients of multiprocess: HuggingFace datasets and pathos.

They are written against the PyPI ``multiprocess``; with this package installed
in its place they must work unchanged (datasets reads ``pool._pool`` and sends
lambdas through ``Dataset.map(num_proc=N)``; pathos sends lambdas for every task).
CI runs this file in a virtual environment that has both installed (see
.ci/run); elsewhere it is skipped because the clients are not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str, method: str) -> str:
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, script), method],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=HERE,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_datasets_map_num_proc(start_method):
    pytest.importorskip("datasets", reason="HuggingFace datasets is not installed")
    stdout = _run("hf_datasets_job.py", start_method)
    assert "datasets map num_proc=2 ok in worker processes" in stdout
    assert "datasets batched map + filter ok" in stdout


def test_pathos_process_pool(start_method):
    pytest.importorskip("pathos", reason="pathos is not installed")
    stdout = _run("pathos_job.py", start_method).splitlines()
    assert stdout[1:] == [
        "[0, 2, 6, 12, 20, 30, 42, 56, 72, 90]",
        "[6, 11]",
        "[3, 4, 5] [-2, -1, 0]",
        "40 5",
    ]
    # The package the clients used is this one, not the PyPI multiprocess.
    import multiprocess

    assert stdout[0] == f"multiprocess from {multiprocess.__file__}"
