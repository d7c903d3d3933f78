"""The forkserver start method: the server, its protocol, and processes it starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import _fs_helpers as h
import pytest

import multiprocess as mp
from multiprocess import forkserver
from multiprocess._errors import AuthenticationError
from multiprocess.connection import wait
from multiprocess.forkserver import _forkserver

pytestmark = pytest.mark.skipif(
    "forkserver" not in mp.get_all_start_methods(), reason="no forkserver here"
)


@pytest.fixture
def ctx():
    return mp.get_context("forkserver")


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def _process_gone(pid):
    """True once ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _wait_gone(pid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not _process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(
    "target, args, expected",
    [(h.exit_with, (0,), 0), (h.raise_error, (), 1), (h.exit_with, (3,), 3)],
)
def test_exit_codes(ctx, target, args, expected):
    p = start(ctx, target, *args)
    p.join(60)
    assert p.exitcode == expected
    assert not p.is_alive()


@pytest.mark.parametrize("how, signum", [("kill", signal.SIGKILL), ("terminate", signal.SIGTERM)])
def test_signalled_child_reports_minus_signal(ctx, how, signum):
    r, _w = ctx.Pipe()
    p = start(ctx, h.wait_for_release, r)
    getattr(p, how)()
    p.join(60)
    assert p.exitcode == -signum
    # The child's pid is gone: signalling it again must be a harmless no-op.
    p.terminate()
    p.kill()


def test_sentinel_and_join_timeout(ctx):
    r, w = ctx.Pipe()
    p = start(ctx, h.wait_for_release, r)
    assert wait([p.sentinel], timeout=0) == []
    p.join(timeout=0.05)
    assert p.is_alive() and p.exitcode is None
    w.send("go")
    assert wait([p.sentinel], timeout=60) == [p.sentinel]
    p.join(60)
    assert p.exitcode == 0
    # Ready for good once the child has exited.  (The server writes the exit
    # code, which join() reads, then closes its end: EOF may come a moment
    # after join() returns.)
    assert wait([p.sentinel], timeout=60) == [p.sentinel]
    assert wait([p.sentinel], timeout=0) == [p.sentinel]


def test_parent_process_and_inherited_fds_in_child(ctx):
    assert forkserver.get_inherited_fds() is None
    r, w = ctx.Pipe(duplex=False)
    p = start(ctx, h.report_parent, w)
    info = r.recv()
    p.join(60)
    assert p.exitcode == 0
    assert info["parent_pid"] == os.getpid()
    assert info["parent_name"] == mp.current_process().name
    assert info["parent_alive"] is True
    assert info["start_method"] == "forkserver"
    # The pipe end travelled as an fd passed to the server with the request.
    assert isinstance(info["inherited_fds"], list) and info["inherited_fds"]


def test_lambda_target(ctx):
    r, w = ctx.Pipe(duplex=False)
    offset = 40
    p = ctx.Process(target=lambda conn, x: conn.send(x + offset), args=(w, 2))
    p.start()
    assert r.recv() == 42
    p.join(60)
    assert p.exitcode == 0


def test_many_concurrent_starts(ctx):
    # Several threads ask the server at once; each gets its own child.
    results = []

    def run():
        p = start(ctx, h.exit_with, 5)
        p.join(60)
        results.append(p.exitcode)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [5] * 8


def test_server_survives_sigint(ctx):
    _forkserver.ensure_running()
    pid = _forkserver._forkserver_pid
    os.kill(pid, signal.SIGINT)
    p = start(ctx, h.exit_with, 0)
    p.join(60)
    assert p.exitcode == 0
    assert _forkserver._forkserver_pid == pid


def test_restarts_after_server_killed(ctx):
    r, w = ctx.Pipe()
    before = start(ctx, h.wait_for_release, r)
    pid = _forkserver._forkserver_pid
    os.kill(pid, signal.SIGKILL)
    p = start(ctx, h.exit_with, 4)
    p.join(60)
    assert p.exitcode == 4
    assert _forkserver._forkserver_pid not in (None, pid)
    # The child of the dead server still runs; its exit code is unknown (255)
    # and is reported only once it has really exited.
    assert before.is_alive()
    w.send("go")
    before.join(60)
    assert before.exitcode == 255


def test_preload_modules(ctx):
    forkserver._stop()
    try:
        ctx.set_forkserver_preload(["_fs_helpers", "no_such_module_xyz"])
        r, w = ctx.Pipe(duplex=False)
        p = start(ctx, h.report_preloaded, w)
        info = r.recv()
        p.join(60)
        assert info["imported_in"] == _forkserver._forkserver_pid == info["ppid"]
        assert info["me"] != info["imported_in"]
    finally:
        ctx.set_forkserver_preload(["__main__"])
        forkserver._stop()


def test_set_forkserver_preload_checks_types(ctx):
    with pytest.raises(TypeError, match="module_names must be a list of strings"):
        ctx.set_forkserver_preload([1, 2, 3])


def test_too_many_fds():
    with pytest.raises(ValueError, match="too many fds"):
        forkserver.connect_to_new_process([0] * forkserver.MAXFDS_TO_SEND)


def test_signed_roundtrip():
    r, w = os.pipe()
    try:
        for n in (0, 1, -9, 255, 2**40, -(2**40)):
            forkserver.write_signed(w, n)
            assert forkserver.read_signed(r) == n
        os.close(w)
        w = None
        with pytest.raises(EOFError):
            forkserver.read_signed(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_server_refuses_unauthenticated_client(ctx):
    _forkserver.ensure_running()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(_forkserver._forkserver_address)
        assert len(s.recv(64)) == 32  # the challenge
        s.sendall(b"\0" * 64)  # a wrong answer
        assert s.recv(64) == b""  # dropped without an answer
    # ... and the server goes on serving the others.
    p = start(ctx, h.exit_with, 0)
    p.join(60)
    assert p.exitcode == 0


def test_client_refuses_impostor_server():
    a, b = socket.socketpair()
    with a, b:

        def impostor():
            b.sendall(os.urandom(32))
            b.recv(64)
            b.sendall(os.urandom(32))  # cannot compute the right answer

        t = threading.Thread(target=impostor)
        t.start()
        with pytest.raises(AuthenticationError):
            forkserver._authenticate_server(a, os.urandom(32))
        t.join(60)


def test_stop_waits_for_server():
    _forkserver.ensure_running()
    pid = _forkserver._forkserver_pid
    forkserver._stop()
    assert _forkserver._forkserver_pid is None
    assert _process_gone(pid)
    forkserver._stop()  # stopping a stopped server is fine


_PARENT_SCRIPT = textwrap.dedent(
    """
    import sys
    import multiprocess as mp
    from multiprocess.forkserver import _forkserver
    from multiprocess.resource_tracker import _resource_tracker
    import _fs_helpers as h

    if __name__ == "__main__":
        p = mp.get_context("forkserver").Process(target=h.exit_with, args=(0,))
        p.start()
        p.join()
        print(_forkserver._forkserver_pid, _resource_tracker._pid, flush=True)
        sys.stdin.read()  # until killed
    """
)


def test_server_exits_when_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT_SCRIPT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        server_pid, tracker_pid = map(int, parent.stdout.readline().split())
        assert not _process_gone(server_pid)
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
    assert _wait_gone(server_pid), "the fork server outlived its parent"
    assert _wait_gone(tracker_pid), "the resource tracker outlived the program"


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
def test_server_authentication_mac_is_hmac_sha256(key_size):
    # The handshake's MAC is computed on the built-in SHA-256 (hmac would load
    # OpenSSL at every server start); it must be HMAC-SHA256 exactly.
    import hmac

    key, nonce = os.urandom(key_size), os.urandom(32)
    expected = hmac.new(key, b"client" + nonce, "sha256").digest()
    assert forkserver._mac(key, b"client", nonce) == expected
    assert forkserver._mac(key, b"server", nonce) != expected
