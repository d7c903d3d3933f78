"""Process, current/parent/active, start methods: the stdlib API under every start method."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import textwrap

import _proc_helpers as h
import pytest

import multiprocess as mp
from multiprocess import context


def start(ctx, target, *args, **kwargs):
    p = ctx.Process(target=target, args=args, **kwargs)
    p.start()
    return p


def test_exit_codes(ctx):
    cases = [
        (h.exit_with, (0,), 0),
        (h.exit_with, (3,), 3),
        (h.exit_with, ("message",), 1),
        (h.raise_error, (), 1),
        (h.os_exit, (7,), 7),
    ]
    procs = [(start(ctx, fn, *args), want) for fn, args, want in cases]
    for p, want in procs:
        p.join(timeout=60)
        assert p.exitcode == want
        assert not p.is_alive()


def test_identity_in_child(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=h.report_identity, args=(w,), name="worker-x", daemon=True)
    assert p.pid is None and p.ident is None and p.exitcode is None
    assert not p.is_alive()
    p.start()
    w.close()
    info = r.recv()
    p.join(60)
    assert info["name"] == "worker-x"
    assert info["pid"] == p.pid == p.ident
    assert info["daemon"] is True
    assert info["authkey"] == bytes(mp.current_process().authkey)
    assert info["parent_pid"] == os.getpid()
    assert info["parent_name"] == mp.current_process().name
    assert info["start_method"] == ctx.get_start_method()
    assert info["stdin_closed"]
    assert p.exitcode == 0


def test_terminate_and_kill(ctx):
    for action, sig in (("terminate", signal.SIGTERM), ("kill", signal.SIGKILL)):
        r, w = ctx.Pipe()
        p = start(ctx, h.block_until_closed, w)
        assert r.recv() == "ready"
        assert p.is_alive()
        assert p in mp.active_children() or ctx.get_start_method() != mp.get_start_method()
        getattr(p, action)()
        p.join(60)
        assert p.exitcode == -sig
        assert f"exitcode=-{signal.Signals(sig).name}" in repr(p)


def test_atexit_handlers_of_the_child_run_at_its_exit(ctx, tmp_path):
    # As in CPython 3.13 (TestAtExit): also under fork, where the child leaves
    # through os._exit; the exit code is kept.
    for code in (0, 3):
        path = tmp_path / f"out{code}.txt"
        p = start(ctx, h.register_atexit_then_exit, str(path), code)
        p.join(60)
        assert p.exitcode == code
        assert path.read_text() == "first,second"


def test_atexit_handlers_run_before_the_package_shuts_the_child_down(ctx):
    # As at a normal interpreter exit (and in CPython 3.13+): the child's own
    # handlers run first, then the package's exit function flushes queues,
    # runs finalizers and joins children; what a handler puts arrives.
    q = ctx.Queue()
    p = start(ctx, h.put_at_exit, q)
    assert q.get(timeout=60) == "sent at exit"
    p.join(60)
    assert p.exitcode == 0


def test_atexit_handlers_of_the_parent_do_not_run_in_the_child(ctx, tmp_path):
    path = tmp_path / "parent-handler.txt"
    atexit.register(h.append_unless_in, os.getpid(), str(path))
    try:
        p = start(ctx, h.exit_with, 0)
        p.join(60)
    finally:
        atexit.unregister(h.append_unless_in)
    assert p.exitcode == 0
    assert not path.exists()


def test_interrupt(ctx):
    # Process.interrupt() (CPython 3.14) sends SIGINT: KeyboardInterrupt in
    # the child, exit code 1; with the default handler restored, -SIGINT.
    r, w = ctx.Pipe()
    p = start(ctx, h.block_and_report_interrupt, w)
    assert r.recv() == "ready"
    p.interrupt()
    assert r.recv() == "KeyboardInterrupt"
    p.join(60)
    assert p.exitcode == 1

    r, w = ctx.Pipe()
    p = start(ctx, h.block_without_sigint_handler, w)
    assert r.recv() == "ready"
    p.interrupt()
    p.join(60)
    assert p.exitcode == -signal.SIGINT
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.interrupt()


def test_join_timeout_and_sentinel(ctx):
    from multiprocess.connection import wait

    r, w = ctx.Pipe()
    p = start(ctx, h.block_until_closed, w)
    assert r.recv() == "ready"
    p.join(timeout=0.05)
    assert p.is_alive() and p.exitcode is None
    assert wait([p.sentinel], timeout=0.05) == []
    r.send("stop")  # the child returns from recv() and exits
    assert wait([p.sentinel], timeout=60) == [p.sentinel]
    p.join(60)
    assert p.exitcode == 0


def test_close(ctx):
    r, w = ctx.Pipe()
    p = start(ctx, h.block_until_closed, w)
    assert r.recv() == "ready"
    with pytest.raises(ValueError, match="still running"):
        p.close()
    r.send("stop")
    p.join(60)
    p.close()
    p.close()  # idempotent
    for attr in ("is_alive", "join", "terminate", "kill"):
        with pytest.raises(ValueError, match="closed"):
            getattr(p, attr)()
    for prop in ("pid", "exitcode", "sentinel"):
        with pytest.raises(ValueError, match="closed"):
            getattr(p, prop)
    assert "closed" in repr(p)


def test_misuse(ctx):
    p = ctx.Process(target=h.exit_with, args=(0,))
    with pytest.raises(AssertionError):
        p.join()  # join before start
    with pytest.raises(ValueError, match="not started"):
        _ = p.sentinel
    p.start()
    with pytest.raises(AssertionError):
        p.start()  # start twice
    with pytest.raises(AssertionError):
        p.daemon = True  # after start
    p.join(60)
    with pytest.raises(ValueError):
        ctx.Process(group=object())
    with pytest.raises(TypeError):
        p.name = 3


def test_daemon_cannot_have_children(ctx):
    r, w = ctx.Pipe()
    p = start(ctx, h.start_grandchild, w, daemon=True)
    kind, msg = r.recv()
    p.join(60)
    assert kind == "AssertionError" and "daemonic" in msg


def test_non_daemon_child_has_children(ctx):
    r, w = ctx.Pipe()
    p = start(ctx, h.child_count_children, w, 3)
    assert r.recv() == [0, 0, 0]
    p.join(60)
    assert p.exitcode == 0


def test_parent_process_alive_and_dead(ctx):
    # A grandchild watches its parent's sentinel; the parent dies without joining.
    r, w = ctx.Pipe(duplex=False)
    middle = start(ctx, h.orphan_probe_middle, ctx.get_start_method(), w)
    middle.join(60)
    assert middle.exitcode == 0
    assert r.recv() == ("parent alive after its death:", False)


def test_subclass(ctx):
    r, w = ctx.Pipe()
    p = h.SUBCLASSES[ctx.get_start_method()](w, 42)
    p.start()
    assert r.recv() == ("subclass", 42, p.name)
    p.join(60)
    assert p.exitcode == 0


def test_callable_object_target_and_closure_args(ctx):
    r, w = ctx.Pipe()
    p = start(ctx, h.Adder(10), w, 5)
    assert r.recv() == 15
    p.join(60)

    offset = 100
    closure = lambda x: x + offset
    p = start(ctx, h.call_and_send, w, closure, 1)
    assert r.recv() == 101
    p.join(60)


def test_lambda_target(ctx):
    r, w = ctx.Pipe()
    p = ctx.Process(target=lambda conn: conn.send("from a lambda"), args=(w,))
    p.start()
    assert r.recv() == "from a lambda"
    p.join(60)
    assert p.exitcode == 0


def test_current_and_active(ctx):
    me = mp.current_process()
    assert me.name == "MainProcess"
    assert me.is_alive()
    assert mp.parent_process() is None
    assert me.pid == os.getpid()
    assert isinstance(mp.cpu_count(), int) and mp.cpu_count() >= 1
    r, w = ctx.Pipe()
    p = start(ctx, h.block_until_closed, w)
    assert r.recv() == "ready"
    assert p in mp.active_children()
    r.send("stop")
    p.join(60)
    assert p not in mp.active_children()


def test_repr_states(ctx):
    p = ctx.Process(target=h.exit_with, args=(0,), name="rp")
    assert repr(p).startswith(f"<{type(p).__name__} name='rp' parent={os.getpid()} initial")
    p.start()
    p.join(60)
    assert "stopped exitcode=0" in repr(p)


#
# Start methods and contexts
#


def test_contexts():
    assert mp.get_all_start_methods()[0] == context._default_context._default_context._name
    assert set(mp.get_all_start_methods()) == {"fork", "spawn", "forkserver"}
    for method in ("fork", "spawn", "forkserver"):
        c = mp.get_context(method)
        assert c.get_start_method() == method
        assert c.get_context() is c
        with pytest.raises(ValueError):
            c.set_start_method(method)
    with pytest.raises(ValueError, match="cannot find context"):
        mp.get_context("no-such-method")


def test_set_start_method_in_fresh_interpreter():
    code = textwrap.dedent(
        """
        import multiprocess as mp
        assert mp.get_start_method(allow_none=True) is None
        mp.set_start_method("spawn")
        assert mp.get_start_method() == "spawn"
        try:
            mp.set_start_method("fork")
        except RuntimeError:
            pass
        else:
            raise SystemExit("set_start_method twice did not raise")
        mp.set_start_method("forkserver", force=True)
        assert mp.get_start_method() == "forkserver"
        mp.set_start_method(None, force=True)
        assert mp.get_start_method(allow_none=True) is None
        try:
            mp.set_start_method("bogus", force=True)
        except ValueError:
            pass
        else:
            raise SystemExit("unknown method did not raise")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_default_start_method_follows_cpython():
    expected = (
        "spawn"
        if sys.platform == "darwin"
        else ("forkserver" if sys.version_info >= (3, 14) else "fork")
    )
    assert context._default_context._default_context._name == expected
    assert context._default_start_method() == expected


@pytest.mark.parametrize(
    ("platform", "version", "send_handle", "expected"),
    [
        ("linux", (3, 9, 18, "final", 0), True, "fork"),
        ("linux", (3, 13, 0, "final", 0), True, "fork"),
        ("linux", (3, 14, 0, "final", 0), True, "forkserver"),
        ("linux", (3, 15, 0, "alpha", 1), True, "forkserver"),
        ("linux", (3, 14, 0, "final", 0), False, "spawn"),
        ("freebsd14", (3, 14, 2), True, "forkserver"),
        ("darwin", (3, 9, 18), True, "spawn"),
        ("darwin", (3, 14, 0), True, "spawn"),
        ("win32", (3, 11, 7), False, "spawn"),
        ("win32", (3, 14, 0), False, "spawn"),
    ],
)
def test_default_start_method_per_python_and_platform(platform, version, send_handle, expected):
    # CPython 3.14 made forkserver the default where fds can be passed (not
    # macOS); macOS has defaulted to spawn since 3.8.
    assert context._default_start_method_for(platform, version, send_handle) == expected


def test_join_timeout_holds_when_the_child_closed_its_sentinel(ctx):
    # Under fork and spawn the child holds the sentinel's write end; one that
    # closes it runs on with its sentinel "ready".  join(timeout) must still
    # return after the timeout (it used to block in waitpid until the child
    # exited), and the child is still seen as running.
    r, w = ctx.Pipe()
    p = start(ctx, h.close_fds_then_block, w)
    w.close()
    assert r.recv() == "closed"
    p.join(0.2)
    assert p.exitcode is None and p.is_alive()
    r.close()  # the child sees EOF and exits
    p.join(60)
    assert p.exitcode == 0
