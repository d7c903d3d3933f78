"""Functions that child processes run in the process tests (importable under spawn)."""

import atexit
import os
import signal
import sys
import time

import multiprocess as mp


def exit_with(code):
    if not isinstance(code, int):
        _quiet()  # sys.exit("message") prints the message: not into a passing run
    sys.exit(code)


def raise_error():
    _quiet()  # the child prints the traceback: not into a passing run
    raise RuntimeError("boom in child")


def _quiet():
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this child's life


def os_exit(code):
    os._exit(code)


def report_identity(conn):
    me = mp.current_process()
    parent = mp.parent_process()
    conn.send(
        {
            "name": me.name,
            "pid": os.getpid(),
            "ident": me.ident,
            "daemon": me.daemon,
            "authkey": bytes(me.authkey),
            "parent_pid": parent.pid if parent else None,
            "parent_name": parent.name if parent else None,
            "start_method": mp.get_start_method(),
            "stdin_closed": sys.stdin is None or sys.stdin.fileno() != 0 or _stdin_is_devnull(),
        }
    )
    conn.close()


def _stdin_is_devnull():
    try:
        return os.path.samefile(f"/proc/self/fd/{sys.stdin.fileno()}", os.devnull)
    except OSError:
        return True


def orphan_probe_middle(method, report_conn):
    """Start a grandchild that watches us, wait until it runs, then die unjoined."""
    c = mp.get_context(method)
    r, w = c.Pipe(duplex=False)
    p = c.Process(target=parent_death_probe, args=(w, report_conn))
    p.start()
    assert mp.parent_process().is_alive()
    r.recv()
    os._exit(0)


def parent_death_probe(ready_conn, report_conn):
    ready_conn.send("waiting")
    mp.parent_process().join(timeout=60)
    report_conn.send(("parent alive after its death:", mp.parent_process().is_alive()))


def block_until_closed(conn):
    """Signal readiness, then wait until the peer closes (or a kill arrives)."""
    conn.send("ready")
    try:
        conn.recv()
    except EOFError:
        pass


def ignore_sigterm_then_block(conn):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    block_until_closed(conn)


def call_and_send(conn, fn, *args, **kwargs):
    conn.send(fn(*args, **kwargs))
    conn.close()


def start_grandchild(conn):
    # A daemonic process may not have children: report the exception.
    p = mp.Process(target=exit_with, args=(0,))
    try:
        p.start()
    except AssertionError as e:
        conn.send(("AssertionError", str(e)))
    else:
        p.join()
        conn.send(("started", p.exitcode))


def child_count_children(conn, n):
    kids = [mp.Process(target=exit_with, args=(0,)) for _ in range(n)]
    for k in kids:
        k.start()
    for k in kids:
        k.join()
    conn.send([k.exitcode for k in kids])


def spin_forever():
    while True:
        time.sleep(3600)


class Adder:
    """A module-level class used as a Process target and argument."""

    def __init__(self, n):
        self.n = n

    def __call__(self, conn, x):
        conn.send(self.n + x)


class _SubProcessMixin:
    """A Process subclass overriding run() (TestSubclassingProcess in the stdlib)."""

    def __init__(self, conn, value):
        super().__init__()
        self.conn = conn
        self.value = value

    def run(self):
        self.conn.send(("subclass", self.value, self.name))


# One importable subclass per start method, found by name under spawn.
SUBCLASSES = {}
for _method in ("fork", "spawn", "forkserver"):
    _cls = type(f"SubProcess_{_method}", (_SubProcessMixin, mp.get_context(_method).Process), {})
    _cls.__module__ = __name__
    globals()[_cls.__name__] = SUBCLASSES[_method] = _cls


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def register_atexit_then_exit(path, code):
    """Register two atexit handlers (they run last-in, first-out), then exit with ``code``."""
    atexit.register(_append, path, "second")
    atexit.register(_append, path, "first,")
    sys.exit(code)


def append_unless_in(pid, path):
    """An atexit handler of the parent: it must not run in a child."""
    if os.getpid() != pid:
        _append(path, f"ran in {os.getpid()}")


def block_without_sigint_handler(conn):
    """Die of SIGINT itself rather than of KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    block_until_closed(conn)


def block_and_report_interrupt(conn):
    """Tell the parent when KeyboardInterrupt arrives, then let it end the child."""
    try:
        block_until_closed(conn)
    except KeyboardInterrupt:
        conn.send("KeyboardInterrupt")
        raise


def put_at_exit(q):
    """Register an atexit handler that puts on ``q``: it must reach the parent."""
    atexit.register(q.put, "sent at exit")


def send_ok_on_each(conns):
    """Send "ok" on every connection: each must still be open in this child."""
    for conn in conns:
        conn.send("ok")


def close_fds_then_block(conn):
    """Close every descriptor but stdio and ``conn`` (the sentinel's end too), then block.

    The parent then sees the sentinel ready (fork, spawn) while this process
    still runs, until ``conn`` is closed.
    """
    keep = conn.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    conn.send("closed")
    try:
        conn.recv()
    except EOFError:
        pass
