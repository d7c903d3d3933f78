"""Scripts that start processes without the ``if __name__ == "__main__":`` guard.

A spawn or forkserver child runs the parent's main module again to find its
functions.  Without the guard, the script's Pool or Process would start again
in every child; as in the standard library, a child that tries raises
RuntimeError (the "bootstrapping phase" message) instead, and a Pool whose
workers die of it is broken at once with that message.  Under fork nothing is
re-run and such scripts work.  Each program runs as a script in a fresh
interpreter; every execution of its body appends a line to a log file.
"""

from __future__ import annotations

import multiprocessing as stdlib_mp  # only to compare the message with the stdlib's
import multiprocessing.spawn
import os
import subprocess
import sys
import textwrap

import pytest

from multiprocess import spawn


def _stdlib_message() -> str:
    current = stdlib_mp.current_process()
    current._inheriting = True
    try:
        with pytest.raises(RuntimeError) as info:
            multiprocessing.spawn._check_not_importing_main()
    finally:
        del current._inheriting
    return info.value.args[0]


MESSAGE = _stdlib_message()
UNGUARDED_POOL = textwrap.dedent(
    """
    import os
    import multiprocess as mp

    def square(x):
        return x * x

    PARENT = int(os.environ.setdefault("PARENT_PID", str(os.getpid())))  # children inherit it

    with open(os.environ["BODY_LOG"], "a") as f:
        f.write("body\\n")
    pool = mp.get_context(os.environ["METHOD"]).Pool(2)
    try:
        print(pool.map(square, range(4)))
    except Exception as e:
        # The parent's error, apart: on stderr, a worker dying at the same
        # time may write its own traceback in the middle of this one.
        if os.getpid() == PARENT:
            with open(os.environ["BODY_LOG"] + ".error", "w") as f:
                f.write(f"{type(e).__module__}.{type(e).__qualname__}: {e}")
        raise
    pool.close()
    pool.join()
    with open(os.environ["BODY_LOG"], "a") as f:
        f.write("after\\n")
    """
)

UNGUARDED_PROCESS = textwrap.dedent(
    """
    import os
    import multiprocess as mp

    def child():
        with open(os.environ["BODY_LOG"], "a") as f:
            f.write("child\\n")

    with open(os.environ["BODY_LOG"], "a") as f:
        f.write("body\\n")
    p = mp.get_context(os.environ["METHOD"]).Process(target=child)
    p.start()
    p.join(60)
    with open(os.environ["BODY_LOG"], "a") as f:
        f.write(f"after {p.exitcode}\\n")
    """
)


def _run_script(tmp_path, program: str, method: str) -> tuple[subprocess.CompletedProcess, list]:
    script = tmp_path / "job.py"
    script.write_text(program)
    log = tmp_path / "body.log"
    env = dict(os.environ, BODY_LOG=str(log), METHOD=method)
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    return out, log.read_text().split("\n")[:-1] if log.exists() else []


def test_message_is_the_standard_librarys():
    assert getattr(spawn, "NOT_BOOTSTRAPPED_MESSAGE", None) == MESSAGE


@pytest.mark.timeout(120)
def test_unguarded_pool(start_method, tmp_path):
    out, log = _run_script(tmp_path, UNGUARDED_POOL, start_method)
    if start_method == "fork":
        # Nothing is re-run: the script works.
        assert out.returncode == 0, out.stderr
        assert out.stdout == "[0, 1, 4, 9]\n"
        assert log == ["body", "after"]
        return
    # The map fails promptly, quoting the stdlib's message; no result is
    # printed and nothing after the pool runs, in the parent or a child.
    assert out.returncode == 1, out.stderr
    assert out.stdout == ""
    error = (tmp_path / "body.log.error").read_text()
    assert error.startswith("multiprocess.pool.BrokenPoolError: "), out.stderr
    assert MESSAGE in error, out.stderr
    assert "multiprocess.pool.BrokenPoolError" in out.stderr
    assert "after" not in log
    # The parent, each worker that started (one or two) and, under
    # forkserver, the server ran the body up to the pool.
    assert log.count("body") <= (4 if start_method == "forkserver" else 3), log


@pytest.mark.timeout(120)
def test_unguarded_process(start_method, tmp_path):
    out, log = _run_script(tmp_path, UNGUARDED_PROCESS, start_method)
    assert out.returncode == 0, out.stderr
    if start_method == "fork":
        assert log == ["body", "child", "after 0"]
        assert out.stderr == ""
        return
    # The child re-ran the body up to Process.start(), which raised: it
    # started no process of its own and never ran its target.
    assert [line for line in log if line.startswith("after")] == ["after 78"], log
    assert "child" not in log
    assert log.count("body") == (3 if start_method == "forkserver" else 2), log
    assert "RuntimeError: " + MESSAGE in out.stderr
    assert out.stderr.count("Traceback") == 1, out.stderr
