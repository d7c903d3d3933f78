"""^C while the main thread waits on a pool, whichever thread the OS gives the signal to.

A process-directed SIGINT may be delivered to any thread that does not block
it; Python then runs its handler in the main thread only when that thread
wakes.  A main thread blocked for good on a lock (a result's ``get()``, the
next ``imap`` result, ``join()``) never would: the ^C, or a Jupyter kernel's
interrupt, would be lost and the program hang.  Each case runs as a script.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ctrl_c_script.py")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["map", "imap", "get", "join"])
def test_ctrl_c_on_another_thread_interrupts_the_waiting_main_thread(start_method, case):
    done = subprocess.run(
        [sys.executable, SCRIPT, start_method, case],
        capture_output=True,
        text=True,
        timeout=90,  # a lost ^C hangs the script: fail here, not the whole run
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "interrupted\n", done.stderr
