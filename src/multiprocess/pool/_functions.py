"""The pickled functions of the calls in flight, reused while unchanged (layer 5).

See ``_PickledFunctions``.  Each entry has a key (``_PickledFunction.key``)
by which the workers, and the coordinator's mirror of their caches, know it.
"""

from __future__ import annotations

import itertools
import threading
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from .. import reduction
from ._oob import Packed, pack

# What workers know a function by: unique in this process, like call ids.
_function_keys = itertools.count()


class _PickledFunction:
    __slots__ = ("cache_key", "data", "fingerprint", "func", "key", "packed", "uses")

    def __init__(self, data: bytes, func: Any, fingerprint: tuple | None, cache_key: Any) -> None:
        self.key = next(_function_keys)  # what workers know it by
        self.data = data
        # Its segments when it has large buffers (see _oob): their memfds are
        # made once and live as long as this entry.
        self.packed: Packed | None = None
        self.func = func
        self.fingerprint = fingerprint
        self.cache_key = cache_key
        self.uses = 1


_NOTHING = object()


def _fingerprint(func: Any) -> tuple | None:
    """What a plain function's pickle depends on, for ``_PickledFunctions``.

    Its code, defaults, closure contents and the globals it names (and those
    of the plain functions among them, a few levels deep), as objects to
    compare by identity.  None for anything but a plain function.
    """
    if type(func) is not types.FunctionType:
        return None
    out: list[Any] = []
    seen: set[int] = set()

    def collect(f: types.FunctionType, depth: int) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        code = f.__code__
        out.extend((f, code, f.__defaults__, f.__kwdefaults__))
        nested = []
        for cell in f.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                value = _NOTHING
            out.append(value)
            nested.append(value)
        names_of = f.__globals__
        codes = [code]
        while codes:
            c = codes.pop()
            for name in c.co_names:
                value = names_of.get(name, _NOTHING)
                out.append(value)
                nested.append(value)
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        if depth < 3:
            for value in nested:
                if type(value) is types.FunctionType:
                    collect(value, depth + 1)

    collect(func, 0)
    return tuple(out)


class _PickledFunctions:
    """The pickled functions of the tasks in flight, reused while unchanged.

    Pickling a lambda or a ``__main__`` function goes through dill (about 100
    microseconds), which would dominate a burst of ``apply_async`` calls.  A
    call whose function is the very object of a task still in flight, with
    the same code, defaults, closure contents and globals (compared by
    identity, see ``_fingerprint``), reuses that task's pickle; and workers
    that already have it are not sent it again.  Once no task uses an entry
    it is dropped, so a later call pickles the function afresh, as it is then.
    In-place changes to a global's contents while tasks that use it are in
    flight may therefore not reach calls made meanwhile.
    """

    def __init__(self, oob: bool = False) -> None:
        self._oob = oob  # large buffers out of band (see _oob)
        self._lock = threading.Lock()
        self._entries: dict[Any, _PickledFunction] = {}

    def acquire(self, func: Any, serializer: reduction.Serializer) -> _PickledFunction:
        """The pickled ``func`` for one more task (raises if it cannot be pickled)."""
        fingerprint = _fingerprint(func)
        cache_key = (id(func), serializer.name) if fingerprint is not None else None
        if cache_key is not None:
            with self._lock:
                entry = self._entries.get(cache_key)
                if entry is not None and _same(entry.fingerprint, fingerprint):  # type: ignore[arg-type]
                    entry.uses += 1
                    return entry
        if self._oob:
            data, packed = pack(serializer, func)
        else:
            data, packed = serializer.dumps(func), None
        entry = _PickledFunction(data, func, fingerprint, cache_key)
        entry.packed = packed
        if cache_key is not None:
            with self._lock:
                self._entries[cache_key] = entry
        return entry

    def reuse(self, func: Any, serializer: reduction.Serializer) -> _PickledFunction | None:
        """``func``'s entry for one more task if it has a good one, else None (no pickling)."""
        fingerprint = _fingerprint(func)
        if fingerprint is None:
            return None
        with self._lock:
            entry = self._entries.get((id(func), serializer.name))
            if entry is not None and _same(entry.fingerprint, fingerprint):  # type: ignore[arg-type]
                entry.uses += 1
                return entry
        return None

    def retain(self, entry: _PickledFunction) -> None:
        with self._lock:
            entry.uses += 1

    def release(self, entry: _PickledFunction) -> None:
        with self._lock:
            entry.uses -= 1
            if entry.uses <= 0 and self._entries.get(entry.cache_key) is entry:
                del self._entries[entry.cache_key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
