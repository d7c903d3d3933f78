"""Alias ``multiprocessing`` (and its submodules) to another package in this interpreter.

Used by the conformance runner: this folder goes first on PYTHONPATH, so the
parent and every child it spawns (spawn, forkserver, resource tracker) import
CPython's test suite with ``multiprocessing`` meaning ``$MP_CONFORMANCE_TARGET``
(default ``multiprocess``).  Nothing is aliased when the target is
``multiprocessing`` itself (the baseline run).
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys

_ALIAS = "multiprocessing"
_TARGET = os.environ.get("MP_CONFORMANCE_TARGET", "multiprocess")


class _Loader(importlib.abc.Loader):
    def __init__(self, real_name):
        self.real_name = real_name

    def create_module(self, spec):
        # Hand out the target's own module object: both names share it.
        return importlib.import_module(self.real_name)

    def exec_module(self, module):
        # The module already ran under its real name; keep its real spec.
        real = sys.modules[self.real_name]
        module.__spec__ = real.__spec__


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != _ALIAS and not fullname.startswith(_ALIAS + "."):
            return None
        real_name = _TARGET + fullname[len(_ALIAS) :]
        return importlib.machinery.ModuleSpec(fullname, _Loader(real_name))


if _TARGET != _ALIAS:
    sys.meta_path.insert(0, _AliasFinder())
