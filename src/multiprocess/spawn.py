"""Start-up of a child that is a fresh interpreter: spawn and forkserver (layer 3).

The parent sends two pickles through a pipe: *preparation data* (name, authkey,
sys.path, working directory, logging, how to find the main module) and then the
Process object itself.  The child applies the first (``prepare``), loads the
second and runs it.

The main module.  Like the standard library, a child re-imports the parent's main
script as ``__mp_main__`` (by path for ``python script.py``, by name for
``python -m pkg.mod``), so that objects pickled by reference to ``__main__``
resolve.  Unlike it, a main module without a file on disk (the REPL, notebooks,
``python -c``, ``python - < job.py``) is never re-imported: functions and classes
defined there travel by value through dill, with the globals they use.
"""

from __future__ import annotations

import atexit
import io
import os
import pickle
import sys
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from . import process, util
from ._forklock import FORK_LOCK

__all__ = [
    "_main",
    "freeze_support",
    "get_command_line",
    "get_executable",
    "get_preparation_data",
    "import_main_path",
    "set_executable",
]

WINEXE = False
WINSERVICE = False


class _SpawnConfig:
    """Which interpreter spawned children run."""

    def __init__(self) -> None:
        exe = sys.executable
        self.executable: str | None = os.fsdecode(exe) if exe else None


_config = _SpawnConfig()


def set_executable(exe: str) -> None:
    """Use ``exe`` as the Python interpreter of spawned children."""
    _config.executable = os.fsdecode(exe)


def get_executable() -> str | None:
    """Return the interpreter spawned children run."""
    return _config.executable


def is_forking(argv: list[str]) -> bool:
    """True if ``argv`` is the command line of a child being spawned (frozen apps)."""
    return len(argv) >= 2 and argv[1] == "--multiprocessing-fork"


def freeze_support() -> None:
    """In a frozen executable started as a child, run the child and exit."""
    if is_forking(sys.argv):
        kwds: dict[str, Any] = {}
        for arg in sys.argv[2:]:
            name, value = arg.split("=")
            kwds[name] = None if value == "None" else int(value)
        spawn_main(**kwds)
        sys.exit()


def _interpreter_flags() -> list[str]:
    # The interpreter options (-O, -X, -W, ...) that children should share.
    with FORK_LOCK:  # imported when first needed: a forked pool never is
        import subprocess
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    return list(flags()) if flags is not None else []


def get_command_line(**kwds: Any) -> list[str]:
    """Return the command line that starts a spawned child."""
    exe = get_executable()
    if exe is None:
        raise RuntimeError(
            "cannot spawn a child: sys.executable is empty; "
            "call multiprocess.set_executable() with the path of a Python interpreter"
        )
    if getattr(sys, "frozen", False):
        return [exe, "--multiprocessing-fork"] + [f"{k}={v}" for k, v in kwds.items()]
    args = ", ".join(f"{k}={v!r}" for k, v in kwds.items())
    prog = f"from {__package__}.spawn import spawn_main; spawn_main({args})"
    return [exe, *_interpreter_flags(), "-c", prog, "--multiprocessing-fork"]


def spawn_main(
    pipe_handle: int, parent_pid: int | None = None, tracker_fd: int | None = None
) -> None:
    """Entry point of a spawned child: read the start-up data from ``pipe_handle``."""
    if tracker_fd is not None:
        from . import resource_tracker

        resource_tracker._resource_tracker._fd = tracker_fd
    # The pipe stays open after reading: its EOF tells the child its parent died.
    parent_sentinel = os.dup(pipe_handle)
    exitcode = _main(pipe_handle, parent_sentinel)
    # The atexit handlers (util._exit_function last) run now, not at interpreter
    # shutdown, where Python 3.12 refuses to start a thread (a Queue.put() in a
    # handler starts one); as in a forked child.  They run once.
    atexit._run_exitfuncs()  # type: ignore[attr-defined]
    util._flush_std_streams()
    sys.exit(exitcode)


def _main(fd: int, parent_sentinel: int | None) -> int:
    with os.fdopen(fd, "rb", closefd=True) as from_parent:
        current = process.current_process()
        current._inheriting = True
        try:
            preparation_data = pickle.load(from_parent)
            prepare(preparation_data)
            self = pickle.load(from_parent)
        except RuntimeError as e:
            if e.args != (NOT_BOOTSTRAPPED_MESSAGE,):
                raise
            # The main module, re-run here, starts processes outside the
            # ``if __name__ == "__main__":`` guard.  Reported as an uncaught
            # error would be, with an exit code that tells the parent why.
            sys.excepthook(type(e), e, e.__traceback__)
            return NOT_BOOTSTRAPPED_EXITCODE
        finally:
            del current._inheriting
    return self._bootstrap(parent_sentinel)


# The standard library's words (3.11 added the last paragraph), so that what
# users search for finds the answer.
NOT_BOOTSTRAPPED_MESSAGE = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                freeze_support()
                ...

        The "freeze_support()" line can be omitted if the program
        is not going to be frozen to produce an executable."""
if sys.version_info >= (3, 11):
    NOT_BOOTSTRAPPED_MESSAGE += """

        To fix this issue, refer to the "Safe importing of main module"
        section in https://docs.python.org/3/library/multiprocessing.html
        """

#: The exit code of a spawn or forkserver child that stopped because its
#: import of the parent's main module tried to start a process (EX_CONFIG of
#: sysexits.h: the program is set up wrong).  A Pool reads it to say why its
#: workers die.
NOT_BOOTSTRAPPED_EXITCODE = 78


def _check_not_importing_main() -> None:
    """Refuse to start a process while this child imports its parent's main module.

    A spawn or forkserver child runs the main module again to find the
    parent's functions; a script that starts processes outside the
    ``if __name__ == "__main__":`` guard would start them again in every
    child (and their results, prints and side effects with them).
    """
    if getattr(process.current_process(), "_inheriting", False):
        raise RuntimeError(NOT_BOOTSTRAPPED_MESSAGE)


def get_preparation_data(name: str) -> dict[str, Any]:
    """Return what a spawned child needs to set itself up like its parent.

    Raises:
        RuntimeError: This process is a child still importing its parent's
            main module (see ``_check_not_importing_main``).
    """
    from . import context

    _check_not_importing_main()
    current = process.current_process()
    d: dict[str, Any] = {
        "log_to_stderr": util._log_to_stderr,
        "authkey": current.authkey,
    }
    if util._logger is not None:
        d["log_level"] = util._logger.getEffectiveLevel()

    # ORIGINAL_DIR is None if the working directory was gone at import.
    sys_path: list[str | None] = list(sys.path)
    try:
        sys_path[sys_path.index("")] = process.ORIGINAL_DIR
    except ValueError:
        pass
    d.update(
        name=name,
        sys_path=sys_path,
        sys_argv=sys.argv,
        orig_dir=process.ORIGINAL_DIR,
        dir=os.getcwd(),
        start_method=context._default_context.get_start_method(),
        serializers={
            method: ctx._serializer
            for method, ctx in context._concrete_contexts.items()
            if ctx._serializer is not None
        },
    )
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].__name__ == __package__:
        d["multiprocessing_alias"] = True  # python -m multiprocess.run (see _alias)
    d.update(_main_module_data(sys.modules["__main__"]))
    return d


def _main_module_data(main_module: types.ModuleType) -> dict[str, str]:
    """How the child finds the parent's main module, if it has one to re-import."""
    spec_name = getattr(getattr(main_module, "__spec__", None), "name", None)
    if spec_name is not None:
        return {"init_main_from_name": spec_name}
    main_path = getattr(main_module, "__file__", None)
    if main_path is None:
        return {}
    if not os.path.isabs(main_path) and process.ORIGINAL_DIR is not None:
        main_path = os.path.join(process.ORIGINAL_DIR, main_path)
    main_path = os.path.normpath(main_path)
    # A "__main__" without a real file (a notebook, an embedding application)
    # cannot be re-imported; its objects travel by value instead.
    if not os.path.isfile(main_path):
        return {}
    return {"init_main_from_path": main_path}


# Main modules replaced by a re-imported one; kept alive so their globals survive.
old_main_modules: list[types.ModuleType] = []


def prepare(data: dict[str, Any]) -> None:
    """Apply the parent's preparation data in a spawned child."""
    current = process.current_process()
    if "name" in data:
        current.name = data["name"]
    if "authkey" in data:
        current.authkey = data["authkey"]
    if data.get("log_to_stderr"):
        util.log_to_stderr()
    if "log_level" in data:
        util.get_logger().setLevel(data["log_level"])
    if "sys_path" in data:
        sys.path = data["sys_path"]
    if "sys_argv" in data:
        sys.argv = data["sys_argv"]
    if "dir" in data:
        os.chdir(data["dir"])
    if "orig_dir" in data:
        process.ORIGINAL_DIR = data["orig_dir"]
    if "start_method" in data or "serializers" in data:
        from . import context

        if data.get("start_method"):
            context._force_start_method(data["start_method"])
        for method, name in data.get("serializers", {}).items():
            context._concrete_contexts[method]._serializer = name
    if data.get("multiprocessing_alias"):
        from . import _alias

        _alias.install()
    if "init_main_from_name" in data:
        _fixup_main_from_name(data["init_main_from_name"])
    elif "init_main_from_path" in data:
        _fixup_main_from_path(data["init_main_from_path"])


def _install_main(module: types.ModuleType) -> None:
    old_main_modules.append(sys.modules["__main__"])
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _fixup_main_from_name(mod_name: str) -> None:
    # A package's __main__ (python -m pkg) only runs the program: skip it.
    current_main = sys.modules["__main__"]
    if mod_name == "__main__" or mod_name.endswith(".__main__"):
        return
    if getattr(current_main.__spec__, "name", None) == mod_name:
        return
    main_module = types.ModuleType("__mp_main__")
    import runpy  # in a new child, which alone runs its parent's __main__

    main_content = runpy.run_module(mod_name, run_name="__mp_main__", alter_sys=True)
    main_module.__dict__.update(main_content)
    _install_main(main_module)


def _fixup_main_from_path(main_path: str) -> None:
    current_main = sys.modules["__main__"]
    main_name = os.path.splitext(os.path.basename(main_path))[0]
    # The IPython launcher is not a module to re-run.
    if main_name == "ipython":
        return
    if getattr(current_main, "__file__", None) == main_path:
        return
    main_module = types.ModuleType("__mp_main__")
    if main_path.endswith(".py") and os.path.isfile(main_path):
        main_content = _run_source_file(main_path, "__mp_main__")
    else:  # a directory, a zip file, compiled code: runpy knows them all
        import runpy

        main_content = runpy.run_path(main_path, run_name="__mp_main__")
    main_module.__dict__.update(main_content)
    _install_main(main_module)


def _run_source_file(path: str, run_name: str) -> dict[str, Any]:
    """``runpy.run_path(path, run_name=run_name)`` for a Python source file.

    The same globals, with ``sys.modules[run_name]`` and ``sys.argv[0]`` set
    while the code runs and restored after, as runpy does; but runpy imports
    pkgutil, and pkgutil typing: about 15 ms in every spawned child of a
    script, which this skips.
    """
    with io.open_code(os.path.abspath(path)) as f:
        code = compile(f.read(), path, "exec")
    module = types.ModuleType(run_name)
    run_globals = module.__dict__
    run_globals.update(
        __name__=run_name,
        __file__=path,
        __cached__=None,
        __doc__=None,
        __loader__=None,
        __package__=run_name.rpartition(".")[0],
        __spec__=None,
    )
    saved_module = sys.modules.get(run_name, _MISSING)
    saved_argv0 = sys.argv[0]
    sys.modules[run_name] = module
    sys.argv[0] = path
    try:
        exec(code, run_globals)  # noqa: S102 - running the script is the point
    finally:
        sys.argv[0] = saved_argv0
        if saved_module is _MISSING:
            sys.modules.pop(run_name, None)
        else:
            sys.modules[run_name] = saved_module
    return run_globals.copy()


_MISSING: Any = object()


def import_main_path(main_path: str) -> None:
    """Set ``sys.modules['__main__']`` to the module at ``main_path``."""
    _fixup_main_from_path(main_path)
