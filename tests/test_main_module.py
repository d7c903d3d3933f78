"""Functions and classes defined in __main__ reach children under every start method.

Each case runs a small program in a fresh interpreter the way users run them: a
script file, ``python -m``, a script fed on stdin, ``python -c``.  The program
defines a function, a lambda, a class and a global assigned only under the
``if __name__ == "__main__":`` guard, and sends them to a child through Process
arguments and a Pipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import sys
    import multiprocess as mp

    SCALE = 10

    def scaled(x):
        return x * SCALE + OFFSET          # OFFSET exists only under the guard

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y
        def norm1(self):
            return abs(self.x) + abs(self.y)

    def child(conn, fn, point):
        extra = conn.recv()               # a lambda and an instance through the Pipe
        conn.send((fn(2), point.norm1(), extra[0](3), extra[1].norm1(), type(point).__name__))

    if __name__ == "__main__":
        OFFSET = 1
        method = sys.argv[1]
        ctx = mp.get_context(method)
        a, b = ctx.Pipe()
        p = ctx.Process(target=child, args=(b, scaled, Point(3, -4)))
        p.start()
        a.send((lambda y: (lambda z: z ** 2)(y) + OFFSET, Point(-1, 1)))
        print(a.recv())
        p.join(60)
        print("exitcode", p.exitcode)
    """
)

EXPECTED = "(21, 7, 10, 2, 'Point')\nexitcode 0"


def _env(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    return env


def _run(cmd, tmp_path, stdin=None):
    out = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env(tmp_path),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == EXPECTED, out.stderr
    return out


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_script_file(tmp_path, method):
    script = tmp_path / "job.py"
    script.write_text(PROGRAM)
    _run([sys.executable, str(script), method], tmp_path)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_run_module(tmp_path, method):
    (tmp_path / "jobmod.py").write_text(PROGRAM)
    _run([sys.executable, "-m", "jobmod", method], tmp_path)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_script_on_stdin(tmp_path, method):
    # `python - < job.py`: the main module has no file to re-import.
    _run([sys.executable, "-", method], tmp_path, stdin=PROGRAM)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_dash_c(tmp_path, method):
    # Like the REPL or a notebook: __main__ has no __file__ at all.
    _run([sys.executable, "-c", PROGRAM, method], tmp_path)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_file_vanished(tmp_path, method):
    # __main__.__file__ points at a file that no longer exists (a deleted
    # script, an embedding application): children must not try to run it.
    script = tmp_path / "gone.py"
    script.write_text(
        PROGRAM.replace(
            "method = sys.argv[1]", "import os; os.remove(__file__); method = sys.argv[1]"
        )
    )
    _run([sys.executable, str(script), method], tmp_path)


LOCAL_MODULE = """
import threading
STATE = threading.local()   # dill cannot copy this: the module must go by name
def bump(x):
    return x + 1
"""

USES_LOCAL_MODULE = """
import sys
import multiprocess as mp
import projutil

def child(conn):
    conn.send((projutil.bump(41), projutil.__name__, hasattr(projutil, "STATE")))

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    a, b = ctx.Pipe()
    p = ctx.Process(target=child, args=(b,))
    p.start()
    print(a.recv())
    p.join(60)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_main_function_using_a_project_module(tmp_path, method):
    # dill would copy a module outside site-packages by value (and fail on its
    # thread-local); we send importable modules by name.
    (tmp_path / "projutil.py").write_text(LOCAL_MODULE)
    script = tmp_path / "job2.py"
    script.write_text(USES_LOCAL_MODULE)
    out = subprocess.run(
        [sys.executable, str(script), method],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env(tmp_path),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(42, 'projutil', True)"


SCRIPT_STATE = """
import sys
SEEN_ARGV0 = sys.argv[0]
SEEN_MODULE = sys.modules[__name__].__dict__ is globals()
RESULT = [__name__, __file__, __package__, __doc__, __cached__, __loader__, __spec__]
"""


def _run_both(tmp_path, source):
    """runpy.run_path and spawn's own runner on the same file: their globals and errors."""
    import runpy

    from multiprocess import spawn

    script = tmp_path / "state.py"
    script.write_text(source)
    out = []
    for run in (runpy.run_path, spawn._run_source_file):
        before = (sys.argv[0], sys.modules.get("__mp_main__"))
        try:
            if run is runpy.run_path:
                result: object = run(str(script), run_name="__mp_main__")
            else:
                result = run(str(script), "__mp_main__")
            result = {k: v for k, v in result.items() if k != "__builtins__"}
        except Exception as e:  # noqa: BLE001 - compared below
            result = (type(e), str(e))
        assert (sys.argv[0], sys.modules.get("__mp_main__")) == before  # restored
        out.append(result)
    return out


def test_spawn_runs_a_script_file_as_runpy_does(tmp_path):
    # Children run their parent's script without runpy (which costs them
    # pkgutil and typing): the same globals, sys.argv[0] and sys.modules entry.
    theirs, ours = _run_both(tmp_path, SCRIPT_STATE)
    assert ours == theirs
    assert ours["SEEN_ARGV0"] == str(tmp_path / "state.py")
    assert ours["SEEN_MODULE"] is True


def test_spawn_script_errors_propagate_and_restore_state(tmp_path):
    theirs, ours = _run_both(tmp_path, "import sys\nsys.argv[0]\nraise KeyError('boom')\n")
    assert ours == theirs == (KeyError, "'boom'")
    theirs, ours = _run_both(tmp_path, "def broken(:\n")
    assert ours[0] is theirs[0] is SyntaxError
