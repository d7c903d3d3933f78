"""The resource tracker: what leaks is unlinked once every process is gone, not before."""

from __future__ import annotations

import _multiprocessing
import _posixshmem
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import _fs_helpers as h
import pytest

from multiprocess import resource_tracker
from multiprocess.resource_tracker import ResourceTracker

SHM_DIR = "/dev/shm"
needs_dev_shm = pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="no /dev/shm")


def _unique(prefix):
    return f"/{prefix}-{os.getpid()}-{os.urandom(4).hex()}"


def _shm_exists(name):
    return os.path.exists(os.path.join(SHM_DIR, name.lstrip("/")))


def _sem_exists(name):
    return os.path.exists(os.path.join(SHM_DIR, "sem." + name.lstrip("/")))


_create_shm = h.create_shm


@pytest.fixture
def tracker():
    t = ResourceTracker()
    t.ensure_running()
    yield t
    t._stop()


#
# Messages
#


@pytest.mark.parametrize(
    "name, rtype, match",
    [
        ("x", "no_such_type", "unknown resource type"),
        ("a" * (512 - len("shared_memory")), "shared_memory", "too long"),
        ("two\nlines", "shared_memory", "newline"),
    ],
)
def test_bad_messages_raise_value_error(name, rtype, match):
    with pytest.raises(ValueError, match=match):
        resource_tracker.register(name, rtype)
    with pytest.raises(ValueError, match=match):
        resource_tracker.unregister(name, rtype)


def test_cleanup_funcs_hold_the_stdlib_types():
    # CPython's suite iterates over these keys as the types to test.
    assert set(resource_tracker._CLEANUP_FUNCS) == {"noop", "semaphore", "shared_memory"}


#
# A private tracker: exit codes, unlinking at EOF
#


def test_exit_code_zero_when_all_unregistered(tracker):
    assert tracker._check_alive()
    tracker.register("somename", "dummy")
    tracker.unregister("somename", "dummy")
    tracker.unregister("never-registered", "dummy")  # harmless
    tracker._stop()
    assert tracker._exitcode == 0
    assert tracker._pid is None and tracker._fd is None


def test_exit_code_one_when_something_leaked(tracker):
    tracker.register("somename", "dummy")
    tracker._stop()
    assert tracker._exitcode == 1


@needs_dev_shm
def test_unlinks_leaked_resources_only_at_eof(tracker):
    shm, kept, sem = _unique("rt-shm"), _unique("rt-kept"), _unique("rt-sem")
    _create_shm(shm)
    _create_shm(kept)
    semlock = _multiprocessing.SemLock(1, 1, 1, sem, False)
    folder = tempfile.mkdtemp(prefix="rt-folder-")
    try:
        tracker.register(shm, "shared_memory")
        tracker.register(kept, "shared_memory")
        tracker.register(sem, "semaphore")
        tracker.register(folder, "folder")
        tracker.unregister(kept, "shared_memory")
        # The tracker has them all, and we still hold the pipe: nothing goes.
        assert tracker._check_alive()
        assert _shm_exists(shm) and _sem_exists(sem) and os.path.isdir(folder)
        tracker._stop()
        assert tracker._exitcode == 1
        assert not _shm_exists(shm)
        assert not _sem_exists(sem)
        assert not os.path.exists(folder)
        assert _shm_exists(kept)  # unregistered: not the tracker's business
    finally:
        del semlock
        for name in (shm, kept):
            if _shm_exists(name):
                _posixshmem.shm_unlink(name)
        if _sem_exists(sem):
            _multiprocessing.sem_unlink(sem)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tracker_ignores_sigint_and_sigterm(tracker):
    with open(f"/proc/{tracker._pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    # Blocked while it starts up, ignored from then on: never deadly.
    safe = int(fields["SigIgn"].strip(), 16) | int(fields["SigBlk"].strip(), 16)
    for sig in (signal.SIGINT, signal.SIGTERM):
        assert safe & (1 << (sig - 1)), f"{sig!r} is neither ignored nor blocked"


def test_restarted_with_a_warning_after_being_killed(tracker):
    pid = tracker._pid
    os.kill(pid, signal.SIGKILL)
    tracker._proc.wait()
    with pytest.warns(UserWarning, match="resource_tracker: process died"):
        tracker.register("somename", "dummy")
    assert tracker._pid not in (None, pid)
    assert tracker._check_alive()
    tracker.unregister("somename", "dummy")
    tracker._stop()
    assert tracker._exitcode == 0


def test_reentrant_call_writes_without_restarting(tracker):
    # As a finalizer run by the garbage collector inside one of our calls would.
    assert tracker._enter()
    try:
        tracker.register("somename", "dummy")
        tracker.unregister("somename", "dummy")
    finally:
        tracker._leave()
    tracker._stop()
    assert tracker._exitcode == 0


def test_reentrant_call_while_starting_warns_instead_of_deadlocking():
    t = ResourceTracker()
    assert t._enter()
    try:
        with pytest.warns(UserWarning, match="reentrantly"):
            t.register("somename", "dummy")
    finally:
        t._leave()
    assert t._fd is None


#
# The package's tracker, shared with children
#


def test_children_reuse_the_tracker(ctx):
    resource_tracker.ensure_running()
    pid = resource_tracker._resource_tracker._pid
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=h.report_tracker, args=(w, pid))
    p.start()
    info = r.recv()
    p.join(60)
    assert p.exitcode == 0
    assert info["reused"], info


_LEAK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import multiprocess as mp
    from multiprocess import resource_tracker
    import _fs_helpers as h

    if __name__ == "__main__":
        method, shm, sem, kept = sys.argv[1:]
        ctx = mp.get_context(method)
        r, w = ctx.Pipe()
        p = ctx.Process(target=h.create_resources_and_wait, args=(w, shm, sem))
        p.start()
        assert r.recv() == "created"
        p.kill()
        p.join()
        # Its creator is dead, but we live: the tracker keeps them.
        print(os.path.exists("/dev/shm/" + shm[1:]), os.path.exists("/dev/shm/sem." + sem[1:]))
        # Registered and then unregistered: never unlinked by the tracker.
        h.create_shm(kept)
        resource_tracker.register(kept, "shared_memory")
        resource_tracker.unregister(kept, "shared_memory")
    """
)


@needs_dev_shm
@pytest.mark.timeout(120)
def test_resources_of_a_killed_child_are_unlinked_after_the_program_ends(ctx, tmp_path):
    script = tmp_path / "leak.py"
    script.write_text(_LEAK_SCRIPT)
    shm, sem, kept = _unique("rt-shm"), _unique("rt-sem"), _unique("rt-kept")
    try:
        # communicate() returns once the tracker (which shares our stderr
        # pipe) has exited, i.e. after its cleanup.
        proc = subprocess.run(
            [sys.executable, str(script), ctx.get_start_method(), shm, sem, kept],
            capture_output=True,
            check=False,
            text=True,
            timeout=100,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["True", "True"]
        assert not _shm_exists(shm)
        assert not _sem_exists(sem)
        assert _shm_exists(kept)
        assert "resource_tracker: There appear to be 1 leaked semaphore objects" in proc.stderr
        assert "resource_tracker: There appear to be 1 leaked shared_memory objects" in proc.stderr
    finally:
        for name in (shm, kept):
            if _shm_exists(name):
                _posixshmem.shm_unlink(name)
        if _sem_exists(sem):
            _multiprocessing.sem_unlink(sem)


_CLEANUP_SCRIPT = textwrap.dedent(
    """
    import os, warnings
    import multiprocess as mp
    from multiprocess import forkserver, resource_tracker, util
    import _fs_helpers as h

    if __name__ == "__main__":
        warnings.simplefilter("error")
        p = mp.get_context("forkserver").Process(target=h.exit_with, args=(0,))
        p.start()
        p.join()
        pids = [forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid]
        util._cleanup_tests()  # stops the fork server, then the tracker, and waits
        resource_tracker._stop()  # stopping twice is fine
        forkserver._stop()
        gone = []
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                gone.append(True)
            else:
                gone.append(False)
        print(resource_tracker._resource_tracker._exitcode, *gone)
    """
)


def test_cleanup_tests_stops_server_and_tracker(tmp_path):
    # In a fresh interpreter: here, children that other tests leaked may still
    # hold the tracker's pipe.
    script = tmp_path / "cleanup.py"
    script.write_text(_CLEANUP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, check=False, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "True", "True"], proc.stderr
