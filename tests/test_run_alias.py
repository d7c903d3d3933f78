"""``python -m multiprocess.run``: unmodified multiprocessing programs on this package.

Each program runs in a fresh interpreter, as a user would start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(180)

# A program written for the standard library: lambdas through Pool and
# concurrent.futures, which the standard library cannot pickle.
PROGRAM = textwrap.dedent(
    """
    import concurrent.futures
    import multiprocessing
    import multiprocessing.pool
    import os
    import sys


    def child(q):
        import multiprocessing as m
        q.put(m.__name__)


    if __name__ == "__main__":
        ctx = multiprocessing.get_context(os.environ["METHOD"])
        with ctx.Pool(2) as pool:
            print(pool.map(lambda x: x * x, range(5)))
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            print(list(ex.map(lambda x: x + 1, range(3))))
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print("child sees", q.get(timeout=60))
        p.join(60)
        print("argv", sys.argv)
        print("pool", multiprocessing.pool.__name__, multiprocessing.pool.__spec__.name)
        print("executor", concurrent.futures.ProcessPoolExecutor.__module__)
        print("file", os.path.basename(os.path.dirname(multiprocessing.__file__)))
    """
)


def _run(args, cwd, method="fork", **kwargs):
    env = dict(os.environ, METHOD=method)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=cwd,
        env=env,
        check=False,
        **kwargs,
    )


def test_a_multiprocessing_script_runs_on_us(start_method, tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    out = _run(["-m", "multiprocess.run", "prog.py", "a", "--b"], tmp_path, start_method)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[0, 1, 4, 9, 16]",
        "[1, 2, 3]",
        "child sees multiprocess",
        "argv ['prog.py', 'a', '--b']",
        "pool multiprocess.pool multiprocess.pool",
        "executor multiprocess.futures",
        "file multiprocess",
    ]


def test_the_same_script_fails_on_the_standard_library(tmp_path):
    # What the runner changes: without it the lambda cannot cross.
    (tmp_path / "prog.py").write_text(PROGRAM)
    out = _run(["prog.py"], tmp_path, "fork")
    assert out.returncode != 0
    assert "PicklingError" in out.stderr or "pickle" in out.stderr


def test_a_module_runs_with_dash_m(start_method, tmp_path):
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "job.py").write_text(PROGRAM)
    out = _run(["-m", "multiprocess.run", "-m", "app.job", "x"], tmp_path, start_method)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["[0, 1, 4, 9, 16]", "[1, 2, 3]", "child sees multiprocess"]
    assert lines[3].startswith("argv [") and lines[3].endswith("'x']")


def test_the_programs_exit_status_is_kept(tmp_path):
    (tmp_path / "prog.py").write_text("import multiprocessing, sys\nsys.exit(3)\n")
    out = _run(["-m", "multiprocess.run", "prog.py"], tmp_path)
    assert out.returncode == 3, out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage: python -m multiprocess.run"),
        (["missing.py"], "can't open file"),
        (["-m"], "-m needs a module name"),
        (["-x", "prog.py"], "unknown option '-x'"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(tmp_path, args, message):
    out = _run(["-m", "multiprocess.run", *args], tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_help_exits_0(tmp_path):
    out = _run(["-m", "multiprocess.run", "--help"], tmp_path)
    assert out.returncode == 0
    assert "usage:" in out.stderr


def test_installing_after_the_standard_library_was_imported_is_refused(tmp_path):
    code = (
        "import multiprocessing\n"
        "from multiprocess import _alias\n"
        "try:\n"
        "    _alias.install()\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
        "print(_alias.installed(), multiprocessing.__name__)\n"
    )
    out = _run(["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "refused: the standard library's multiprocessing is imported already" in out.stdout
    assert out.stdout.splitlines()[-1] == "False multiprocessing"
