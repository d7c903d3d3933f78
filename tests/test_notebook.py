"""Notebooks, for real: a Jupyter kernel runs the cells, as a user's notebook would.

Functions, lambdas, classes and closures defined in cells live in a
``__main__`` that has no file, so spawn and forkserver children cannot import
it: they must travel by value.  Ctrl-C (a kernel interrupt) during a pool's map
must leave the kernel usable and no worker behind.
"""

from __future__ import annotations

import os
import queue
import select
import textwrap
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(240)

CELLS = [
    "import multiprocess as mp\nctx = mp.get_context({method!r})",
    "def square(x):\n    return x * x",
    "offset = 10\nadd = lambda x: x + offset",
    textwrap.dedent(
        """
        class Point:
            def __init__(self, x):
                self.x = x

            def norm(self):
                return abs(self.x)
        """
    ),
    "def make_scaler(k):\n    def scale(x):\n        return x * k\n    return scale\n\ntriple = make_scaler(3)",
    textwrap.dedent(
        """
        with ctx.Pool(2) as pool:
            print("pool", pool.map(square, range(4)), pool.map(add, range(3)),
                  pool.map(triple, [1, 2]), [p.norm() for p in pool.map(Point, [-1, 2])])
        """
    ),
    textwrap.dedent(
        """
        q = ctx.Queue()
        child = ctx.Process(target=lambda q: q.put(Point(-5).norm() + add(0) + triple(1)), args=(q,))
        child.start()
        print("process", q.get(timeout=60))
        child.join(60)
        print("exitcode", child.exitcode)
        """
    ),
    textwrap.dedent(
        """
        from multiprocess.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(2, mp_context=ctx) as ex:
            print("executor", list(ex.map(lambda x: triple(x) + offset, range(3))),
                  ex.submit(Point, 7).result(60).norm())
        """
    ),
]


def test_cell_defined_functions_lambdas_classes_and_closures_cross(start_method):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(method=start_method)) for c in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    printed = "".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.outputs
        if out.output_type == "stream"
    )
    assert printed.splitlines() == [
        "pool [0, 1, 4, 9] [10, 11, 12] [3, 6] [1, 2]",
        "process 18",
        "exitcode 0",
        "executor [10, 13, 16] 7",
    ]


class _Kernel:
    """A kernel driven as a notebook front end does."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3")
        # The output channel may connect after the kernel answered (older
        # ipykernel): what a cell prints before then is lost.  Print until seen.
        for _ in range(20):
            msg_id = self.start("print('ready', flush=True)")
            self.reply(msg_id)
            if self._printed(msg_id, timeout=5):
                return
        raise AssertionError("the kernel's output never reached us")

    def _printed(self, msg_id: str, timeout: float) -> bool:
        try:
            while True:
                msg = self.client.get_iopub_msg(timeout=timeout)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    return True
        except queue.Empty:
            return False

    def start(self, code: str) -> str:
        # stop_on_error=False: a cell that ends in an error (the interrupt)
        # must not have the kernel abort the requests that come right after it
        # ("aborted" replies, seen under load).
        return self.client.execute(code, stop_on_error=False)

    def reply(self, msg_id: str) -> dict:
        while True:
            msg = self.client.get_shell_msg(timeout=120)
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    def run(self, code: str, expression: str) -> str:
        """Run ``code``, then return the repr of ``expression`` as the kernel answers it.

        The answer comes with the execution's reply, not on the output
        channel, where a dying worker's traceback can come late and mingle.
        """
        msg_id = self.client.execute(code, user_expressions={"x": expression})
        reply = self.reply(msg_id)
        assert reply["status"] == "ok", reply
        answer = reply["user_expressions"]["x"]
        assert answer["status"] == "ok", answer
        return answer["data"]["text/plain"]

    def close(self, now: bool = True) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=now)


def _wait_gone(pids: list[int], timeout: float = 60) -> list[int]:
    """Wait (on pidfds, no polling) until each process has exited; return those still alive."""
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


class _Announcements:
    """A named pipe that the workers write their pids to, read as they come.

    Workers start on demand, so the pool's ``_pool`` right after ``Pool(2)``
    may not list them yet: each worker says it runs from inside its task.
    """

    def __init__(self, path: str) -> None:
        os.mkfifo(path)
        self.path = path
        self._read = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # Held open so that the read end never sees EOF between two writers.
        self._write = os.open(path, os.O_WRONLY)
        self._data = b""

    def pids(self, count: int, timeout: float = 120) -> list[int]:
        deadline = time.monotonic() + timeout
        while self._data.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise AssertionError(
                    f"{count} workers did not start: they announced {self._data!r}"
                )
            self._data += os.read(self._read, 4096)
        return [int(pid) for pid in self._data.split()]

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


BLOCKING_MAP = textwrap.dedent(
    """
    import os
    import threading
    import multiprocess as mp

    def forever(x):
        with open({fifo!r}, "w") as announcements:
            announcements.write(f"{{os.getpid()}}\\n")
        threading.Event().wait()

    pool = mp.get_context({method!r}).Pool(2)
    {call}
    """
)


def test_interrupting_a_map_leaves_the_kernel_usable_and_no_worker(start_method, tmp_path):
    kernel = _Kernel()
    announcements = _Announcements(str(tmp_path / "pids"))
    try:
        code = BLOCKING_MAP.format(
            method=start_method,
            fifo=announcements.path,
            call="with pool:\n    pool.map(forever, range(4))",
        )
        msg_id = kernel.start(code)
        # Both workers run a task that never returns: interrupt the map.
        pids = announcements.pids(2)
        kernel.manager.interrupt_kernel()
        reply = kernel.reply(msg_id)
        assert reply["status"] == "error"
        assert reply["ename"] == "KeyboardInterrupt"
        assert _wait_gone(pids) == []
        # The kernel goes on, with no child left, and pools still work.
        assert kernel.run("", "(mp.active_children(), 6 * 7)") == "([], 42)"
        again = "with mp.get_context({!r}).Pool(2) as p:\n    out = p.map(lambda x: -x, [1, 2])"
        assert kernel.run(again.format(start_method), "out") == "[-1, -2]"
    finally:
        kernel.close()
        announcements.close()


def test_restarting_the_kernel_stops_a_busy_pool_left_open(start_method, tmp_path):
    kernel = _Kernel()
    announcements = _Announcements(str(tmp_path / "pids"))
    try:
        code = BLOCKING_MAP.format(
            method=start_method,
            fifo=announcements.path,
            call="result = pool.map_async(forever, range(4))",
        )
        msg_id = kernel.start(code)
        assert kernel.reply(msg_id)["status"] == "ok"
        pids = announcements.pids(2)
    finally:
        announcements.close()
        # What "Restart kernel" does first: ask the kernel to shut down.
        kernel.close(now=False)
    assert _wait_gone(pids) == []
