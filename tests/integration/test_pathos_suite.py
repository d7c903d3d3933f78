"""pathos' own test scripts, run against this package as pathos users install it.

The README tells pathos users to install this package first, then ``pip install
pathos``; CI does the same (.ci/run, client section) and runs this file there.
Each script runs as ``python -m pathos.tests.test_<name>`` in its own session under
a timeout, so a hang is a failure that names the script, not a hung CI.  Elsewhere
(pathos not installed) the file is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("pathos", reason="pathos is not installed")

SCRIPTS = ["decorate", "join", "map", "maps", "mp", "pp", "random", "star", "with"]
TIMEOUT = 90  # seconds; each takes under 10 s on a loaded 2-core machine


@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.parametrize("name", SCRIPTS)
def test_pathos_script(name: str, tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", f"pathos.tests.test_{name}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        start_new_session=True,  # its pool workers share the group: one kill ends them all
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"pathos.tests.test_{name} hung (killed after {TIMEOUT} s):\n{output[-3000:]}")
    assert proc.returncode == 0, (
        f"pathos.tests.test_{name} exited {proc.returncode}:\n{output[-3000:]}"
    )
