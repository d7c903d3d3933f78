"""Whatever the main module does while the fork server preloads it, pools work.

The fork server imports the program's main module once, so that its children
inherit it.  A script that parses its arguments at module level must see the
program's own arguments there (as a spawned child does), and a main module
that raises, calls ``sys.exit()``, prints or even ``os._exit()``s at import in
the server must not take the server, and every pool with it, down.  Each
program runs as a script in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ARGPARSE_SCRIPT = textwrap.dedent(
    """
    import argparse
    import os
    import multiprocess as mp

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()

    def square(x):
        return x * x

    if __name__ == "__main__":
        with mp.get_context(os.environ["METHOD"]).Pool(2) as pool:
            print(pool.map(square, range(args.n)))
    """
)

# The action runs only in the fork server: the parent runs the file as
# __main__; spawned children and the server's children carry their own names.
IMPORT_ACTION_SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    import multiprocess as mp

    def square(x):
        return x * x

    if __name__ != "__main__" and mp.current_process().name == "MainProcess":
        action = os.environ["IMPORT_ACTION"]
        if action == "raise":
            raise ValueError("refusing to be imported here")
        if action == "exit":
            sys.exit(3)
        if action == "os_exit":
            os._exit(4)
        if action == "print":
            print("imported in the fork server")

    if __name__ == "__main__":
        with mp.get_context(os.environ["METHOD"]).Pool(2) as pool:
            print(pool.map(square, range(4)))
        with mp.get_context(os.environ["METHOD"]).Pool(1) as pool:
            print(pool.apply(square, (5,)))
    """
)


def _run(tmp_path, program: str, args: list[str], **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(program)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=dict(os.environ, **env),
        check=False,
    )


@pytest.mark.timeout(120)
def test_argparse_at_module_level(start_method, tmp_path):
    out = _run(tmp_path, ARGPARSE_SCRIPT, ["--n", "4"], METHOD=start_method)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[0, 1, 4, 9]\n"
    assert out.stderr == ""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("action", ["raise", "exit", "os_exit", "print"])
def test_main_module_misbehaves_in_the_fork_server(start_method, tmp_path, action):
    out = _run(tmp_path, IMPORT_ACTION_SCRIPT, [], METHOD=start_method, IMPORT_ACTION=action)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-2:] == ["[0, 1, 4, 9]", "25"], out.stdout
    if start_method != "forkserver":
        # No fork server: the action never runs.
        assert lines == ["[0, 1, 4, 9]", "25"]
        assert out.stderr == ""
        return
    if action == "print":
        assert lines == ["imported in the fork server", "[0, 1, 4, 9]", "25"]
        assert out.stderr == ""
        return
    # Said once, in one warning; the pools worked.
    assert out.stderr.count("UserWarning: forkserver:") == 1, out.stderr
    expected = {
        "raise": "raised ValueError('refusing to be imported here')",
        "exit": "called sys.exit(3)",
        "os_exit": "exited by itself (code 4)",
    }[action]
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
