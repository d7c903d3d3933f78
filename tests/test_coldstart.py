"""Cold start: a short script's pool imports only what its first call needs (issue 14).

Each case runs a fresh interpreter (the test process has imported everything
already): ``import multiprocess``, ``Pool(2)``, a ``map`` of a module-level
function, then reports which of ``_coldstart_helpers.HEAVY`` the parent and
each worker have loaded.  Timings are in ``bench/bench_coldstart.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
import json, sys
import multiprocess as mp
import _coldstart_helpers as h
if __name__ == "__main__":
    with mp.get_context({method!r}).Pool(2) as pool:
        check = h.heavy_modules if {method!r} == "fork" else h.worker_heavy_modules
        workers = pool.map(check, range(8), chunksize=1)
        first = pool.apply(abs, (-3,))
    print(json.dumps({{"parent": h.heavy_modules(0), "workers": workers, "first": first}}))
"""


def _run(method: str, script_dir: Path | None = None) -> dict:
    code = SCRIPT.format(method=method)
    if script_dir is None:
        command = [sys.executable, "-c", code]
    else:  # a script file, which spawned and forkserver workers run again as __mp_main__
        script = script_dir / "short_job.py"
        script.write_text(code)
        command = [sys.executable, str(script)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=100, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_pool_imports_no_heavy_module(start_method):
    report = _run(start_method)
    assert report["first"] == 3
    assert report["parent"] == []
    assert report["workers"] == [[]] * 8


def test_a_script_file_pool_imports_no_heavy_module(start_method, tmp_path):
    # Workers that run the parent's script again do it without runpy, whose
    # pkgutil would import typing.
    report = _run(start_method, tmp_path)
    assert report["parent"] == []
    assert report["workers"] == [[]] * 8


def test_the_check_sees_heavy_modules():
    # The helper does see a heavy module once one is loaded (the check is not vacuous).
    import typing  # noqa: F401

    import _coldstart_helpers as h

    assert "typing" in h.heavy_modules(0)


EXECUTOR_SCRIPT = """
import json, sys
import multiprocess as mp
from multiprocess.futures import ProcessPoolExecutor
if __name__ == "__main__":
    with ProcessPoolExecutor(2, mp_context=mp.get_context({method!r})) as ex:
        out = list(ex.map(abs, [-1, -2, -3], chunksize=2))
    print(json.dumps({{"typing": "typing" in sys.modules, "out": out}}))
"""


def test_an_executor_imports_no_typing(start_method):
    # concurrent.futures itself is needed (its Future); typing is not.
    code = EXECUTOR_SCRIPT.format(method=start_method)
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"typing": False, "out": [1, 2, 3]}
