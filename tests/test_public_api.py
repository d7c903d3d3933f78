"""Every public module exists, carries the stdlib namesake's public names, and imports
with nothing but the declared dependencies."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "",
    ".context",
    ".process",
    ".connection",
    ".queues",
    ".synchronize",
    ".pool",
    ".managers",
    ".sharedctypes",
    ".shared_memory",
    ".heap",
    ".reduction",
    ".util",
    ".dummy",
    ".dummy.connection",
    ".spawn",
    ".forkserver",
    ".resource_tracker",
    ".resource_sharer",
    ".popen_fork",
    ".popen_spawn_posix",
    ".popen_forkserver",
]


@pytest.mark.parametrize("suffix", MODULES)
def test_module_has_the_stdlib_public_names(suffix):
    ours = importlib.import_module("multiprocess" + suffix)
    # The reference only: the package itself never imports multiprocessing.
    theirs = importlib.import_module("multiprocessing" + suffix)
    assert hasattr(ours, "__all__")
    for name in ours.__all__:
        assert hasattr(ours, name), f"multiprocess{suffix}.__all__ names missing {name!r}"
    missing = [n for n in getattr(theirs, "__all__", ()) if not hasattr(ours, n)]
    assert not missing, f"multiprocess{suffix} lacks stdlib names {missing}"


def test_package_never_imports_stdlib_multiprocessing_or_undeclared_modules():
    # A fresh interpreter where typing_extensions cannot be imported (it is not a
    # dependency) imports every module and runs a child; the stdlib's
    # multiprocessing must not be imported along the way (dill, once used, may).
    code = f"""
import sys
sys.modules["typing_extensions"] = None
import importlib
for suffix in {MODULES!r}:
    importlib.import_module("multiprocess" + suffix)
leaked = sorted(m for m in sys.modules if m == "multiprocessing" or m.startswith("multiprocessing."))
assert not leaked, leaked
import multiprocess as mp
p = mp.get_context("fork").Process(target=print, args=("child ran",))
p.start(); p.join()
print("exit", p.exitcode)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "ran", "exit", "0"]
