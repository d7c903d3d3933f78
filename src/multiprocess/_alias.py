"""The name ``multiprocessing`` resolved to this package, for a whole program (layer 6).

``install()`` puts a finder first on ``sys.meta_path`` that answers every
import of ``multiprocessing`` or ``multiprocessing.X`` with the module
``multiprocess`` or ``multiprocess.X`` itself (one module object under two
names, never a second copy), and points ``concurrent.futures``'
``ProcessPoolExecutor`` at ours.  Children started by this package inherit
it: spawn and forkserver preparation data carry a flag that makes
``spawn.prepare`` install it before the parent's main module is imported
again; forked children have it already.  ``python -m multiprocess.run``
is its command line.

The standard library's ``multiprocessing`` modules are never imported;
installing fails if something imported them first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

__all__ = ["install", "installed"]

_ALIAS = "multiprocessing"
_OURS = "multiprocess"


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``multiprocessing[.X]`` with the already imported ``multiprocess[.X]``."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _ALIAS and not fullname.startswith(_ALIAS + "."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(_OURS + spec.name[len(_ALIAS) :])
        # The import system gives the module this alias's spec after create_module;
        # exec_module puts the module's own back.
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        spec = module.__spec__
        if spec is not None and spec.name in self._specs:
            module.__spec__ = self._specs.pop(spec.name)


def installed() -> bool:
    """Whether ``multiprocessing`` names this package in this process."""
    return any(isinstance(finder, _AliasFinder) for finder in sys.meta_path)


def install() -> None:
    """Resolve ``multiprocessing`` (and its submodules) to this package from now on.

    Also makes ``concurrent.futures.ProcessPoolExecutor`` (and
    ``concurrent.futures.process.ProcessPoolExecutor``) ours.  Doing it
    twice does nothing more.

    Raises:
        RuntimeError: the standard library's ``multiprocessing`` was imported
            already: modules holding it would mix two implementations.
    """
    if installed():
        return
    loaded = sys.modules.get(_ALIAS)
    if loaded is not None and loaded is not sys.modules.get(_OURS):
        raise RuntimeError(
            "the standard library's multiprocessing is imported already, so it cannot "
            "be replaced by multiprocess for this program; start the program with "
            "`python -m multiprocess.run` before anything imports multiprocessing"
        )
    sys.meta_path.insert(0, _AliasFinder())
    import concurrent.futures

    from .futures import ProcessPoolExecutor

    # Ours is not a subclass of the standard library's executor (it shares
    # nothing with it): type checkers cannot see this replacement as sound.
    concurrent.futures.ProcessPoolExecutor = ProcessPoolExecutor  # type: ignore[misc, assignment]
    # Loaded now, against this package (the finder is in place), so that code
    # importing the executor from there gets ours too.
    import concurrent.futures.process

    concurrent.futures.process.ProcessPoolExecutor = ProcessPoolExecutor  # type: ignore[misc, assignment]
