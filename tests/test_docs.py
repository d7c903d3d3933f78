"""The documentation builds without a warning, and the code it shows runs as it says.

``docs/`` is built with Sphinx the way CI builds it (``-W --keep-going``: any
warning fails), into a temporary directory.  The programs the pages include
from ``docs/snippets/`` run here, and each one's output must be the
``# Output:`` block at its end, which the page shows.  Examples included from
``examples/`` are run by ``test_examples.py``.  Needs the ``docs`` extra (the
``test`` extra has it).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SNIPPETS = sorted(glob.glob(os.path.join(DOCS, "snippets", "*.py")))
SNIPPET_TIMEOUT = 90


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``args`` in its own process group; kill the group on a hang or after it ends."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{args} ran past {timeout} s\n{stdout}\n{stderr}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@pytest.mark.timeout(240)
def test_docs_build_without_warnings(tmp_path):
    if importlib.util.find_spec("sphinx") is None:
        pytest.fail('Sphinx is not installed: pip install -e ".[docs]" (the test extra has it)')
    out = _run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",  # a warning is an error...
            "--keep-going",  # ...reported with all the others
            "-E",  # read every page again
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            DOCS,
            str(tmp_path / "html"),
        ],
        timeout=200,
    )
    assert out.returncode == 0, f"sphinx-build failed:\n{out.stderr}"
    assert "WARNING" not in out.stderr, out.stderr
    for page in ("index", "quickstart", "task-control", "dask", "api/pool", "benchmarks"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    # The API reference comes from the docstrings: a public name is in it.
    api = (tmp_path / "html" / "api" / "futures.html").read_text(encoding="utf-8")
    assert "get_reusable_executor" in api and "task_timeout" in api


def _expected_output(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    marker = "\n# Output:\n"
    assert marker in text, f"{path} shows no '# Output:' block"
    block = text.split(marker, 1)[1]
    return [re.sub(r"^# ?", "", line) for line in block.strip().splitlines()]


def test_every_snippet_is_shown_on_a_page():
    assert SNIPPETS, "no snippets found"
    pages = ""
    for page in glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True):
        with open(page, encoding="utf-8") as f:
            pages += f.read()
    shown = set(re.findall(r"literalinclude:: (?:\.\./)?snippets/(\w+\.py)", pages))
    assert sorted(shown) == sorted(os.path.basename(s) for s in SNIPPETS)


@pytest.mark.timeout(SNIPPET_TIMEOUT + 30)
@pytest.mark.parametrize("path", SNIPPETS, ids=os.path.basename)
def test_snippet_prints_what_the_page_shows(path):
    out = _run([sys.executable, path], timeout=SNIPPET_TIMEOUT)
    assert out.returncode == 0, f"{path} exited with {out.returncode}\n{out.stderr}"
    assert out.stderr == "", out.stderr
    assert out.stdout.splitlines() == _expected_output(path)


def test_the_dask_page_matches_the_code():
    # The page describes the module that exists, with its public names.
    with open(os.path.join(DOCS, "dask.rst"), encoding="utf-8") as f:
        page = f.read()
    assert importlib.util.find_spec("multiprocess.dask") is not None
    import multiprocess.dask

    assert "Not available yet" not in page
    for name in multiprocess.dask.__all__:
        assert name in page, f"docs/dask.rst does not mention {name}"
