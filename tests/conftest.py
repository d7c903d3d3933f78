"""Shared fixtures: every behaviour test runs under each start method via ``ctx``."""

from __future__ import annotations

import os
import signal
import sys

import pytest

# Children started by spawn/forkserver must be able to import the test helper
# modules (tests/_*.py): put this folder on their sys.path through the environment.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_HERE, os.environ.get("PYTHONPATH")) if p
    )
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# A shell starts a background job (``cmd &``) with SIGINT ignored, and children
# inherit that: tests of ^C and of Process.interrupt() would then wait forever.
# Run them as from a terminal, whatever started pytest.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

START_METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture(params=START_METHODS)
def ctx(request):
    """The multiprocess context of one start method."""
    import multiprocess

    return multiprocess.get_context(request.param)


@pytest.fixture
def start_method(ctx):
    """The name of the start method ``ctx`` uses."""
    return ctx.get_start_method()


def pytest_sessionfinish(session, exitstatus):
    """Children that a failed test left running must not keep pytest from exiting.

    At exit the interpreter joins every non-daemonic child, as the standard
    library does: one still blocked on a pipe would hold the whole run (and CI)
    until its time limit.  Kill them here, and say so.
    """
    import multiprocess

    left = multiprocess.active_children()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in left)
        reporter.write_line(f"conftest: killing children left running by the tests: {names}")
    for p in left:
        p.kill()
    for p in left:
        p.join(30)
