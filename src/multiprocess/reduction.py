"""Turning objects into bytes and back (layer 2: serialization).

This is the only module of the package that pickles.  Everything above it
(connections, queues, pools, managers, the spawn launcher) calls :func:`dumps`,
:func:`dump` and :func:`loads` *at call time*, so the serializer can be chosen
per call, per context or with the ``MULTIPROCESS_SERIALIZER`` environment
variable.  It imports nothing from the layers above (a :class:`DupFd` sent
outside a child's start-up imports ``resource_sharer`` lazily).

Serializers (:func:`get_serializer`):

``'dill'`` (default)
    A hybrid.  The C ``pickle.Pickler`` does the work, so plain data (numbers,
    strings, containers, numpy arrays, instances of importable classes) is
    pickled at C speed and never touches Python-level pickling code.  Its
    ``reducer_override`` hook hands to dill exactly the objects that pickle
    cannot take by reference: lambdas, nested functions and closures, functions
    and classes defined in ``__main__`` or dynamically, modules, and the few
    built-in types dill knows and pickle does not (locks, code objects, ...).
    Each of those becomes ``_load_dill(<dill bytes>, ...)`` inside the ordinary
    pickle stream.  All by-value pieces of one payload go through a single dill
    pickler, so objects they share (a ``__main__`` class used by a function and
    by the instances next to it) are still one object after loading.

    numpy arrays that dill meets inside those pieces are handed back to the C
    pickler (C speed, out-of-band buffers, one object if the payload holds them
    too).  Any other object reached both from a by-value function (its globals
    or closure) and from the rest of the payload is pickled twice and loads as
    two objects, where dill alone would keep one.  Types registered with
    ``dill.register`` count only inside dill's pieces; use :func:`register`.

    If the C pickler still fails (an object pickle rejects and dill accepts),
    the whole payload is pickled by dill instead.  If dill fails too,
    :class:`SerializationError` says which object could not be serialized.
    dill pickles one thread at a time (see ``_DILL_GUARD``).

``'pickle'``
    The standard library's behaviour and error messages: lambdas fail.

``'cloudpickle'``
    cloudpickle's pickler, when cloudpickle is installed.

Every serializer emits an ordinary pickle (protocol 5 by default), so loading
is always the C unpickler: ``pickle.loads(data, buffers=...)``.  Protocol 5
out-of-band buffers let large buffers (numpy arrays, bytearrays, memoryviews)
travel beside the stream without being copied into it (:func:`dumps_oob`).

The module also carries the standard library's POSIX handle passing
(:func:`sendfds`, :func:`recvfds`, :func:`send_handle`, :func:`recv_handle`,
:func:`DupFd`) and its :class:`ForkingPickler` registry (:func:`register`).
"""

from __future__ import annotations

import array
import copyreg
import functools
import importlib
import io
import itertools
import os
import pickle
import socket
import sys
import threading
import types
import weakref
from abc import ABCMeta
from collections import OrderedDict

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import IO, Any, Callable, ClassVar

from ._forklock import FORK_LOCK
from ._spawning import get_spawning_popen

__all__ = [
    "ACKNOWLEDGE",
    "DEFAULT_OOB_MIN_SIZE",
    "DEFAULT_PROTOCOL",
    "HAVE_SEND_HANDLE",
    "SERIALIZER_ENV",
    "AbstractReducer",
    "DupFd",
    "ForkingPickler",
    "SerializationError",
    "Serializer",
    "available_serializers",
    "dump",
    "dumps",
    "dumps_oob",
    "get_serializer",
    "loads",
    "recv_handle",
    "recvfds",
    "register",
    "send_handle",
    "sendfds",
]

#: Pickle protocol used when none is given: 5, for out-of-band buffers.
DEFAULT_PROTOCOL: int = min(5, pickle.HIGHEST_PROTOCOL)

#: :func:`dumps_oob` keeps buffers smaller than this (bytes) inside the stream.
DEFAULT_OOB_MIN_SIZE: int = 1 << 20

#: Environment variable naming the serializer used when none is given.
SERIALIZER_ENV: str = "MULTIPROCESS_SERIALIZER"

_DEFAULT_SERIALIZER = "dill"

_pickle_dumps = pickle.dumps

HAVE_SEND_HANDLE: bool = (
    sys.platform != "win32"
    and hasattr(socket, "CMSG_LEN")
    and hasattr(socket, "SCM_RIGHTS")
    and hasattr(socket.socket, "sendmsg")
)

# macOS can lose file descriptors that were sent but not yet received when the
# sender closes its end (bpo-14669), so there the receiver acknowledges each one.
ACKNOWLEDGE: bool = sys.platform == "darwin"


class SerializationError(pickle.PicklingError, TypeError):
    """An object could not be serialized, not even by dill.

    It is a :class:`pickle.PicklingError` and, like the standard library's
    "cannot pickle 'X' object", a :class:`TypeError`, so existing ``except``
    clauses keep working.  ``__cause__`` holds the error of the last attempt.
    """


# ---------------------------------------------------------------------------
# ForkingPickler: the C pickler plus a registry of reducers
# ---------------------------------------------------------------------------


class ForkingPickler(pickle.Pickler):
    """The C pickler, consulting the reducers given to :func:`register` first.

    This is the standard library's ``ForkingPickler``: it pickles what
    :mod:`pickle` pickles (lambdas fail), plus the registered types (sockets,
    connections, shared-memory arenas...).  The default ``'dill'`` serializer
    uses a subclass that also handles what only dill can.

    Args:
        file: Binary file-like object with a ``write`` method.
        protocol: Pickle protocol; None means :data:`DEFAULT_PROTOCOL` (5).
        fix_imports: As for :class:`pickle.Pickler`.
        buffer_callback: As for :class:`pickle.Pickler` (protocol 5 only).
    """

    #: type -> reduce function; shared by every subclass (and the dill fallback).
    _extra_reducers: ClassVar[dict[type, Callable[[Any], Any]]] = {}

    def __init__(
        self,
        file: IO[bytes],
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> None:
        if protocol is None:
            protocol = DEFAULT_PROTOCOL
        _pickler_init(self, file, protocol, fix_imports, buffer_callback)
        # Like the standard library, each pickler built here gets its own copy
        # of the table, which its owner may change.
        self.dispatch_table = dict(_DISPATCH.table())

    @classmethod
    def register(cls, type: type, reduce: Callable[[Any], Any]) -> None:
        """Pickle instances of exactly ``type`` as ``reduce(obj)`` returns.

        ``reduce`` returns a ``(callable, args)`` tuple like ``__reduce__``.
        The registration applies to every serializer of this package.
        """
        ForkingPickler._extra_reducers[type] = reduce
        _DISPATCH.invalidate()

    @classmethod
    def dumps(cls, obj: Any, protocol: int | None = None) -> bytes:
        """Return ``obj`` pickled by this pickler class."""
        buf = io.BytesIO()
        cls(buf, protocol).dump(obj)
        return buf.getvalue()

    loads = pickle.loads


register = ForkingPickler.register

_extra_reducers = ForkingPickler._extra_reducers
_pickler_init = pickle.Pickler.__init__
_DISPATCH_TABLE_SLOT = pickle.Pickler.__dict__["dispatch_table"]


class _DispatchTable:
    """The registry merged over ``copyreg.dispatch_table``, rebuilt when either changes.

    The C pickler looks the type of every non-builtin object up in its
    ``dispatch_table``.  A plain dict keeps that a C-level lookup (a ChainMap
    miss costs two Python-level KeyErrors per object), and sharing one merged
    dict between the serializers' picklers saves merging it on every message.
    The dict is never mutated: a change builds a new one.  A change of
    ``copyreg.dispatch_table`` is noticed by its size, so replacing the reducer
    of an already registered type there is not seen (register here instead).
    """

    __slots__ = ("_key", "_table")

    def __init__(self) -> None:
        self._table: dict[type, Callable[[Any], Any]] = {}
        self._key: tuple[int, int] = (-1, -1)

    def invalidate(self) -> None:
        self._key = (-1, -1)

    def table(self) -> dict[type, Callable[[Any], Any]]:
        key = (len(copyreg.dispatch_table), len(ForkingPickler._extra_reducers))
        if key != self._key:
            table = copyreg.dispatch_table.copy()
            table.update(ForkingPickler._extra_reducers)
            self._table, self._key = table, key
        return self._table


_DISPATCH = _DispatchTable()


# Lets one thread of this process pickle with dill at a time.  To find the
# globals a function uses, dill disassembles it into a swapped-in
# ``sys.stdout``.  Two threads doing so at once (queue feeder threads, a pool's
# task thread) read each other's output: functions lose globals (NameError
# when called) and ``sys.stdout`` can stay swapped.  It is the lock fork()
# waits for (see _forklock), so that a child never starts inside that window,
# and dill itself and the other modules imported here lazily by whatever
# thread pickles (cloudpickle, resource_sharer) are imported under it too.
_DILL_GUARD = FORK_LOCK


def _import_dill() -> types.ModuleType:
    """Return the dill module, imported while fork() must wait (see _DILL_GUARD)."""
    with _DILL_GUARD:
        import dill
    return dill


def _new_pickler(
    cls: Any,
    file: IO[bytes],
    protocol: int,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
) -> Any:
    # What cls(file, protocol, buffer_callback=...) does, minus the Python-level
    # __init__ and its copy of the dispatch table: about half the fixed cost
    # of pickling a small message.  The hybrid pickler consults the registry
    # in reducer_override and needs no table.
    pickler = cls.__new__(cls)
    _pickler_init(pickler, file, protocol, True, buffer_callback)
    if not issubclass(cls, _HybridPickler):
        pickler.dispatch_table = _DISPATCH.table()
    elif protocol != DEFAULT_PROTOCOL:
        pickler._protocol = protocol
    return pickler


# ---------------------------------------------------------------------------
# The hybrid pickler: C speed, dill for what pickle cannot take by reference
# ---------------------------------------------------------------------------

_FunctionType = types.FunctionType
_LRUCacheType: type | None = getattr(functools, "_lru_cache_wrapper", None)

# Types that pickle refuses ("cannot pickle 'X' object") and dill pickles.  They
# go to dill one object at a time instead of sending the whole payload there.
_BY_VALUE_TYPES: frozenset[type] = frozenset(
    (
        types.ModuleType,
        types.CodeType,
        types.CellType,
        types.MappingProxyType,
        types.GetSetDescriptorType,
        types.MemberDescriptorType,
        type(dict.__dict__["fromkeys"]),  # classmethod_descriptor
        property,
        staticmethod,
        classmethod,
        super,
        type(threading.Lock()),
        type(threading.RLock()),
        weakref.ReferenceType,
        weakref.ProxyType,
        weakref.CallableProxyType,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
        type(OrderedDict().keys()),
        type(OrderedDict().values()),
        type(OrderedDict().items()),
        io.FileIO,
        io.BufferedReader,
        io.BufferedWriter,
        io.BufferedRandom,
        io.TextIOWrapper,
    )
)

# Classes pickle saves natively although their names do not resolve.
_PICKLE_SPECIAL_TYPES = (type(None), type(NotImplemented), type(...))


def _is_importable(obj: Any) -> bool:
    """Whether pickle can save ``obj`` (a function or class) by reference.

    True when ``obj.__qualname__`` looked up in the already imported module
    ``obj.__module__`` is ``obj`` itself.  ``__main__`` (and ``__mp_main__``, the
    name a spawned child gives its parent's main script) never counts: the
    process that loads the object has a different main module, or none.
    """
    try:
        module_name = obj.__module__
        if module_name is None or module_name == "__main__" or module_name == "__mp_main__":
            return False
        qualname = obj.__qualname__
        # '<lambda>', 'f.<locals>.g', '<genexpr>': never reachable by name.
        if "<" in qualname:
            return False
        found = sys.modules.get(module_name)
        if found is None:
            return False
        for name in qualname.split("."):
            found = getattr(found, name)
        return found is obj
    except Exception:  # noqa: BLE001 - any failure of the lookup means: not by reference
        return False


class _HybridPickler(ForkingPickler):
    """ForkingPickler that sends to dill what pickle cannot take by reference.

    The C pickler calls :meth:`reducer_override` for every object that is not an
    exact builtin atom or container, so the hook must be cheap: anything that
    is not registered, a function, a class or one of :data:`_BY_VALUE_TYPES`
    returns ``NotImplemented`` after a dict lookup and two type checks.
    """

    # Class-level defaults, so that _new_pickler() need not set them.
    _protocol: int = DEFAULT_PROTOCOL
    _session: _DillSession | None = None
    #: Set when dill failed on a by-value object: retrying with dill is useless.
    by_value_failed: bool = False

    def __init__(
        self,
        file: IO[bytes],
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> None:
        if protocol is None:
            protocol = DEFAULT_PROTOCOL
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        self._protocol = protocol

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        # The registry first, as the dispatch table would be.  Looking it up
        # here, in a call the C pickler makes anyway, lets picklers built by
        # _new_pickler() go without a dispatch_table of their own, whose misses
        # (almost every lookup) each raise and swallow a KeyError in C.
        if t in _extra_reducers:
            return _extra_reducers[t](obj)
        if t is _FunctionType or t is _LRUCacheType:
            if _is_importable(obj):
                return NotImplemented
        elif isinstance(obj, type):
            if (
                _is_importable(obj)
                or any(obj is special for special in _PICKLE_SPECIAL_TYPES)
                or (t is not type and t in copyreg.dispatch_table)
            ):
                return NotImplemented
        elif t not in _BY_VALUE_TYPES or t in copyreg.dispatch_table:
            return NotImplemented
        return self._reduce_by_value(obj)

    def _reduce_by_value(self, obj: Any) -> Any:
        session = self._session
        if session is None:
            session = self._session = _DillSession(self._protocol)
        try:
            data, refs = session.dump(obj)
        except Exception as error:
            # The failed attempt memoized objects it never wrote out: later
            # pieces must not refer to them.
            self._session = None
            if isinstance(error, RecursionError) and type(obj) is _FunctionType:
                piece = self._reduce_without_recurse(obj)
                if piece is not None:
                    return piece
            if _resolves_in_main(obj):
                # What dill cannot rebuild (a ctypes type, say) goes by name,
                # as the standard library sends it: the child finds it in its
                # re-imported main module.
                return NotImplemented
            self.by_value_failed = True
            converted = _serialization_error(obj, error, by_value=True)
            if converted is error:
                raise
            raise converted from error
        # The session token is one object for the whole stream: the C pickler
        # memoizes it, so all _load_dill calls of one load share one unpickler.
        # The arrays in refs are pickled by this (C) pickler, after this call.
        return _load_dill, (data, session.token, refs)

    def _reduce_without_recurse(self, obj: Any) -> Any:
        # dill's recurse=True walks closures without noticing cycles, so a
        # nested function that calls itself overflows the stack.  Without
        # recurse, dill saves its globals as a whole (a module's by reference),
        # as dill does by default.  A piece of its own, outside the session.
        file = io.BytesIO()
        refs: list[Any] = []
        try:
            with _DILL_GUARD:
                _dill_pickler(file, self._protocol, refs, recurse=False).dump(obj)
        except Exception:  # noqa: BLE001 - the caller reports the first error
            return None
        return _load_dill, (file.getvalue(), None, refs or None)

    @classmethod
    def dumps(cls, obj: Any, protocol: int | None = None) -> bytes:
        """Return ``obj`` serialized like ``get_serializer('dill').dumps``."""
        return _DILL.dumps(obj, protocol)


def _resolves_in_main(obj: Any) -> bool:
    """True for a function or class of ``__main__`` that its qualified name finds."""
    if not isinstance(obj, (type, _FunctionType)):
        return False
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or module.__name__ not in ("__main__", "__mp_main__"):
        return False
    target: Any = module
    for part in obj.__qualname__.split("."):
        target = getattr(target, part, None)
    return target is obj


def _dill_pickler(file: IO[bytes], protocol: int, refs: list[Any], recurse: bool = True) -> Any:
    """A dill pickler with our registry, leaving arrays to pickle.

    ``recurse=True`` makes a function carry the globals it uses, even those a
    script sets only under ``if __name__ == "__main__":``.

    numpy arrays (without Python objects inside) and PickleBuffers met by dill
    are appended to ``refs`` and pickled as references to them; the caller
    has the C pickler pickle ``refs``.  So they keep protocol 5 out-of-band
    transport (dill copies arrays into the stream), are not copied twice when
    a function's globals and the rest of the payload share them, and cost C
    speed.  They hold no references to other objects, so this cannot loop.
    """
    dill = _import_dill()
    pickler = dill.Pickler(file, protocol, recurse=recurse)
    # Set on a stock dill.Pickler rather than in a subclass: dill changes its
    # behaviour for picklers whose class is not defined in a dill module.
    pickler.dispatch_table = _DISPATCH.table()
    pickler.dispatch = _dill_dispatch(type(pickler).dispatch)
    ndarray = getattr(sys.modules.get("numpy"), "ndarray", None)
    picklebuffer = pickle.PickleBuffer

    def persistent_id(obj: Any) -> int | None:
        t = type(obj)
        if t is picklebuffer or (t is ndarray and not obj.dtype.hasobject):
            refs.append(obj)
            return len(refs) - 1
        return None

    pickler.persistent_id = persistent_id
    return pickler


_DILL_DISPATCH: dict[int, dict] = {}


def _dill_dispatch(base: dict) -> dict:
    """dill's dispatch, except that importable modules go by reference.

    dill pickles every module outside ``sys.prefix`` and site-packages by value,
    with its whole ``__dict__``: a ``__main__`` function that uses a module of
    the user's project (``import utils``) or an editable install would carry a
    copy of that module, or fail on whatever the module holds (a lock, a
    thread-local).  A module that the child can import by name is sent by name,
    as pickle sends functions and classes.  Only modules that are not importable
    (made at run time, not in ``sys.modules``) keep dill's by-value treatment.
    """
    table = _DILL_DISPATCH.get(id(base))
    if table is None:
        dill_save_module = base[types.ModuleType]

        def save_module(pickler: Any, obj: types.ModuleType) -> None:
            name = getattr(obj, "__name__", None)
            if (
                isinstance(name, str)
                and name not in ("__main__", "__mp_main__")
                and sys.modules.get(name) is obj
            ):
                pickler.save_reduce(importlib.import_module, (name,), obj=obj)
            else:
                dill_save_module(pickler, obj)

        # Same type as dill's table: its get() also finds classes by metaclass.
        table = type(base)(base)
        table[types.ModuleType] = save_module
        _DILL_DISPATCH[id(base)] = table
    return table


class _DillSession:
    """One dill pickler for all by-value objects of one payload.

    Its memo lives as long as the payload's pickling, so an object reached from
    two by-value objects is pickled once and loads as one object.
    """

    __slots__ = ("_file", "_pickler", "_refs", "_sent", "token")

    def __init__(self, protocol: int) -> None:
        self._file = io.BytesIO()
        self._refs: list[Any] = []  # persistent ids index this list
        self._sent = 0
        self._pickler = _dill_pickler(self._file, protocol, self._refs)
        self.token: dict[str, Any] = {}

    def dump(self, obj: Any) -> tuple[bytes, list[Any] | None]:
        """Return dill's pickle of ``obj`` and the arrays it refers to."""
        file = self._file
        file.seek(0)
        file.truncate()
        with _DILL_GUARD:
            self._pickler.dump(obj)
        refs = None
        if len(self._refs) > self._sent:
            refs = self._refs[self._sent :]
            self._sent = len(self._refs)
        return file.getvalue(), refs


class _DillLoader:
    """Loads the dill pieces of one stream with one unpickler (shared memo)."""

    __slots__ = ("_file", "_refs", "_unpickler")

    def __init__(self) -> None:
        dill = _import_dill()
        self._file = io.BytesIO()
        self._refs: list[Any] = []
        # The C unpickler reads exactly up to each STOP (BytesIO has no peek),
        # so the file can be refilled with the next piece between loads.
        self._unpickler = dill.Unpickler(self._file)
        self._unpickler.persistent_load = self._refs.__getitem__

    def load(self, data: bytes, refs: list[Any] | None) -> Any:
        file = self._file
        file.seek(0)
        file.truncate()
        file.write(data)
        file.seek(0)
        if refs:
            self._refs.extend(refs)
        return self._unpickler.load()


def _load_dill(
    data: bytes, session: dict[str, Any] | None = None, refs: list[Any] | None = None
) -> Any:
    """Rebuild an object pickled by dill inside a pickle stream.

    Args:
        data: dill's pickle of the object.
        session: A dict shared by all pieces of one stream (None: standalone).
        refs: The objects that ``data`` refers to by persistent id.
    """
    if session is None:
        unpickler = _import_dill().Unpickler(io.BytesIO(data))
        if refs:
            unpickler.persistent_load = refs.__getitem__
        return unpickler.load()
    loader = session.get("loader")
    if loader is None:
        loader = session["loader"] = _DillLoader()
    return loader.load(data, refs)


class _DillPayload:
    """A whole payload pickled by dill, wrapped so that pickle.loads reads it."""

    __slots__ = ("data", "refs")

    def __init__(self, data: bytes, refs: list[Any] | None) -> None:
        self.data = data
        self.refs = refs

    def __reduce__(self) -> Any:
        return _load_dill, (self.data, None, self.refs)


# Errors with which the C pickler says "I cannot do this" and dill may succeed.
_FALLBACK_ERRORS = (pickle.PicklingError, TypeError, AttributeError, RecursionError)


def _dumps_whole_with_dill(
    obj: Any, protocol: int, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None
) -> bytes:
    file = io.BytesIO()
    refs: list[Any] = []
    with _DILL_GUARD:
        _dill_pickler(file, protocol, refs).dump(obj)
    out = io.BytesIO()
    _new_pickler(ForkingPickler, out, protocol, buffer_callback).dump(
        _DillPayload(file.getvalue(), refs or None)
    )
    return out.getvalue()


# ---------------------------------------------------------------------------
# Error reports
# ---------------------------------------------------------------------------


def _serialization_error(
    obj: Any, error: BaseException, *, by_value: bool = False, first: BaseException | None = None
) -> BaseException:
    """The exception to raise when ``obj`` could not be serialized.

    Pickling failures ("cannot pickle 'X' object") become a SerializationError
    naming the object.  Anything else was raised by the object's own
    ``__reduce__`` / ``__getstate__`` (a Lock refusing to leave its process,
    RecursionError on a too deep structure) and is returned unchanged, as the
    standard library would raise it.
    """
    if isinstance(error, SerializationError) or not isinstance(
        error, (pickle.PicklingError, TypeError)
    ):
        return error
    if by_value:
        message = (
            f"cannot serialize {_describe(obj)}: it goes by value through dill (pickle "
            f"cannot take it by reference), and it or something it references (for a "
            f"function: a global or closure variable it uses) cannot be pickled: {error}"
        )
    else:
        where = _locate_culprit(obj)
        message = f"cannot serialize {type(obj)!r} object"
        if where:
            message += f": {where}"
        message += f"; it cannot be pickled, not even with dill: {error}"
        if first is not None and str(first) != str(error):
            message += f" (pickle said: {first})"
    message += (
        ". Send something the other process can rebuild instead (a path rather than an "
        "open file, a parameter rather than a live object), or give the type a "
        "__reduce__ method or a reducer with multiprocess.reduction.register()."
    )
    return SerializationError(message)


def _describe(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = object.__repr__(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(obj)!r})"


def _locate_culprit(obj: Any, depth: int = 4) -> str:
    """Path to the first item of ``obj`` that dill cannot pickle, e.g. "[1]['f']".

    Best effort and bounded: only containers and instance ``__dict__``s, at most
    ``depth`` levels and a few hundred items per level.
    """

    def fails(item: Any) -> bool:
        try:
            with _DILL_GUARD:
                _dill_pickler(io.BytesIO(), DEFAULT_PROTOCOL, []).dump(item)
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return True
        return False

    path = ""
    culprit = obj
    try:
        for _ in range(depth):
            if isinstance(culprit, (list, tuple)):
                items: Any = ((f"[{i}]", v) for i, v in enumerate(culprit))
            elif isinstance(culprit, dict):
                items = ((f"[{k!r}]", v) for k, v in culprit.items())
            elif isinstance(getattr(culprit, "__dict__", None), dict):
                items = ((f".{k}", v) for k, v in vars(culprit).items())
            else:
                break
            for label, value in itertools.islice(items, 300):
                if fails(value):
                    path += label
                    culprit = value
                    break
            else:
                break
    except Exception:  # noqa: BLE001 - best effort: no path rather than a new error
        return ""
    if not path:
        return ""
    return f"item {path} ({type(culprit)!r})"


# ---------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------


_PLAIN_ATOMS: frozenset[type] = frozenset((int, float, str, bytes, bool, type(None)))
_PLAIN_CONTAINER_MAX = 64


def _is_plain(obj: Any) -> bool:
    """True for an atom, or a small tuple, list or dict of atoms, of exact builtin types.

    A tuple or list may also hold such small containers (a call's arguments
    and keyword arguments, ``((1, 2), {})``), up to ``_PLAIN_CONTAINER_MAX``
    items in all.  The C pickler writes these itself, before any reducer,
    dispatch table or ``reducer_override`` is consulted, so ``pickle.dumps``
    gives every serializer's bytes, without the cost of building a pickler
    (about three quarters of the time for a small message).  The check is
    shallow and bounded, so that it stays cheap when it fails.
    """
    t = type(obj)
    if t in _PLAIN_ATOMS:
        return True
    if t is tuple or t is list:
        budget = _PLAIN_CONTAINER_MAX - len(obj)
        if budget < 0:
            return False
        for x in obj:
            tx = type(x)
            if tx in _PLAIN_ATOMS:
                continue
            if tx is tuple or tx is list or tx is dict:
                budget -= len(x)
                if budget < 0 or not _is_flat(x):
                    return False
                continue
            return False
        return True
    if t is dict:
        return len(obj) <= _PLAIN_CONTAINER_MAX and _is_flat(obj)
    return False


def _is_flat(obj: Any) -> bool:
    """True for a tuple, list or dict (keys and values) of atoms (see ``_is_plain``)."""
    if type(obj) is dict:
        for k, v in obj.items():
            if type(k) not in _PLAIN_ATOMS or type(v) not in _PLAIN_ATOMS:
                return False
        return True
    for x in obj:
        if type(x) not in _PLAIN_ATOMS:
            return False
    return True


class Serializer:
    """A way of turning objects into bytes.  Loading is always ``pickle.loads``.

    Get one with :func:`get_serializer`; ``name`` is what that function takes.
    """

    name: str = "pickle"
    # Whether small plain messages may skip the pickler (see _is_plain): true
    # for the serializers defined here, whose picklers cannot treat them
    # differently; a subclass with a persistent_id, say, could.
    _plain_shortcut: bool = False

    @property
    def pickler_class(self) -> type:
        """The pickler class (a subclass of the C ``pickle.Pickler``)."""
        return ForkingPickler

    def dumps(
        self,
        obj: Any,
        protocol: int | None = None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> bytes:
        """Return ``obj`` pickled.

        Args:
            obj: The object.
            protocol: Pickle protocol; None means :data:`DEFAULT_PROTOCOL` (5).
            buffer_callback: Called with each :class:`pickle.PickleBuffer`; a
                falsy return value sends that buffer out of band (the callback
                keeps it), a true one keeps it in the stream.

        Raises:
            pickle.PicklingError, TypeError: ``obj`` cannot be pickled.
        """
        if self._plain_shortcut and _is_plain(obj):
            return _pickle_dumps(obj, DEFAULT_PROTOCOL if protocol is None else protocol)
        file = io.BytesIO()
        self._pickler(file, protocol, buffer_callback).dump(obj)
        return file.getvalue()

    def dump(
        self,
        obj: Any,
        file: IO[bytes],
        protocol: int | None = None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> None:
        """Write ``obj`` pickled to the binary ``file`` (see :meth:`dumps`)."""
        self._pickler(file, protocol, buffer_callback).dump(obj)

    def loads(self, data: Any, buffers: Any | None = None) -> Any:
        """Return the object pickled in ``data`` (bytes-like), with its ``buffers``."""
        return pickle.loads(data, buffers=buffers)

    def _pickler(
        self,
        file: IO[bytes],
        protocol: int | None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
    ) -> Any:
        return _new_pickler(
            self.pickler_class,
            file,
            DEFAULT_PROTOCOL if protocol is None else protocol,
            buffer_callback,
        )

    def _check_available(self) -> None:
        """Raise ImportError if this serializer's package is not installed."""

    def _dumps_attempts(
        self,
        obj: Any,
        protocol: int | None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any],
        restart: Callable[[], None],
    ) -> bytes:
        # dumps() for a callback that tolerates a discarded attempt: restart()
        # is called before any retry.  Serializers that retry override it.
        return self.dumps(obj, protocol, buffer_callback)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _PickleSerializer(Serializer):
    name = "pickle"
    _plain_shortcut = True


class _DillSerializer(Serializer):
    name = "dill"
    _plain_shortcut = True

    @property
    def pickler_class(self) -> type:
        return _HybridPickler

    def dumps(
        self,
        obj: Any,
        protocol: int | None = None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> bytes:
        if self._plain_shortcut and _is_plain(obj):
            return _pickle_dumps(obj, DEFAULT_PROTOCOL if protocol is None else protocol)
        if buffer_callback is None:
            return _dumps_hybrid(obj, protocol, None, None)[0]
        # A first attempt may be thrown away (dill fallback), and the caller's
        # callback must only see buffers of the attempt that is returned: take
        # them all out of band, then ask the callback, and pickle again the
        # same way only if it wants some of them inside the stream.
        buffers: list[pickle.PickleBuffer] = []
        data, whole = _dumps_hybrid(obj, protocol, buffers.append, buffers.clear)
        in_band = [bool(buffer_callback(buffer)) for buffer in buffers]
        if any(in_band):
            decisions = iter(in_band)

            def decide(_buffer: pickle.PickleBuffer) -> bool:
                return next(decisions)

            if whole:
                data = _dumps_whole_with_dill(obj, _protocol(protocol), decide)
            else:
                file = io.BytesIO()
                self._pickler(file, protocol, decide).dump(obj)
                data = file.getvalue()
        return data

    def dump(
        self,
        obj: Any,
        file: IO[bytes],
        protocol: int | None = None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    ) -> None:
        # Pickled in memory first: a failed first attempt must not leave bytes in file.
        file.write(self.dumps(obj, protocol, buffer_callback))

    def _dumps_attempts(
        self,
        obj: Any,
        protocol: int | None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any],
        restart: Callable[[], None],
    ) -> bytes:
        return _dumps_hybrid(obj, protocol, buffer_callback, restart)[0]


def _dumps_hybrid(
    obj: Any,
    protocol: int | None,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
    restart: Callable[[], None] | None,
) -> tuple[bytes, bool]:
    """Pickle ``obj``; return the bytes and whether dill did the whole payload."""
    if protocol is None:
        protocol = DEFAULT_PROTOCOL
    file = io.BytesIO()
    pickler = _new_pickler(_HybridPickler, file, protocol, buffer_callback)
    try:
        pickler.dump(obj)
    except _FALLBACK_ERRORS as error:
        if pickler.by_value_failed:
            raise  # dill already failed on the culprit, and the error names it
        first: BaseException = error
    else:
        return file.getvalue(), False
    # Outside the except block, so that a second failure is not chained to the first.
    del pickler, file
    if restart is not None:
        restart()
    try:
        return _dumps_whole_with_dill(obj, protocol, buffer_callback), True
    except Exception as error:
        converted = _serialization_error(obj, error, first=first)
        if converted is error:
            raise
        raise converted from error


class _CloudpickleSerializer(Serializer):
    name = "cloudpickle"
    _plain_shortcut = True
    _class: type | None = None

    @property
    def pickler_class(self) -> type:
        if self._class is None:
            self._class = _make_cloudpickle_pickler()
        return self._class

    def _check_available(self) -> None:
        # Import now, so that choosing a missing serializer fails at once.
        if self._class is None:
            self._class = _make_cloudpickle_pickler()

    def _pickler(
        self,
        file: IO[bytes],
        protocol: int | None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
    ) -> Any:
        return self.pickler_class(file, protocol, buffer_callback=buffer_callback)


def _make_cloudpickle_pickler() -> type:
    try:
        with _DILL_GUARD:  # imported while fork() waits (see _DILL_GUARD)
            import cloudpickle
    except ImportError as error:
        raise ImportError(
            "the 'cloudpickle' serializer needs the cloudpickle package: "
            "pip install cloudpickle (or use the 'dill' or 'pickle' serializer)"
        ) from error
    base = getattr(cloudpickle, "Pickler", None) or cloudpickle.CloudPickler

    class CloudForkingPickler(base):  # type: ignore[misc, valid-type]
        """cloudpickle's pickler, consulting this package's reducers first."""

        def __init__(
            self,
            file: IO[bytes],
            protocol: int | None = None,
            *,
            buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
        ) -> None:
            if protocol is None:
                protocol = DEFAULT_PROTOCOL
            super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
            table = dict(base.dispatch_table)  # flattens cloudpickle's ChainMap
            table.update(ForkingPickler._extra_reducers)
            # cloudpickle's class attribute hides the C pickler's slot from a
            # plain assignment, which would only fill the instance __dict__.
            _DISPATCH_TABLE_SLOT.__set__(self, table)

        @classmethod
        def dumps(cls, obj: Any, protocol: int | None = None) -> bytes:
            buf = io.BytesIO()
            cls(buf, protocol).dump(obj)
            return buf.getvalue()

        loads = pickle.loads

    CloudForkingPickler.__module__ = __name__
    return CloudForkingPickler


def _protocol(protocol: int | None) -> int:
    return DEFAULT_PROTOCOL if protocol is None else protocol


_DILL = _DillSerializer()
_SERIALIZERS: dict[str, Serializer] = {
    "dill": _DILL,
    "pickle": _PickleSerializer(),
    "cloudpickle": _CloudpickleSerializer(),
}


def _environ_getter() -> Callable[[], str | None]:
    # os.environ.get() costs ~0.6 us when the variable is unset (a KeyError is
    # raised and caught inside), and this runs for every message.  os.environ
    # keeps its contents in the dict _data (CPython, every version we support);
    # look there, falling back to the public API elsewhere.
    environ = os.environ
    data = getattr(environ, "_data", None)
    encodekey = getattr(environ, "encodekey", None)
    decodevalue = getattr(environ, "decodevalue", None)
    if not isinstance(data, dict) or encodekey is None or decodevalue is None:
        return functools.partial(environ.get, SERIALIZER_ENV)
    key = encodekey(SERIALIZER_ENV)

    def get() -> str | None:
        value = data.get(key)
        return None if value is None else decodevalue(value)

    return get


_serializer_from_environ = _environ_getter()


def available_serializers() -> list[str]:
    """Names :func:`get_serializer` accepts here ('cloudpickle' only if installed)."""
    import importlib.util

    names = ["dill", "pickle"]
    if importlib.util.find_spec("cloudpickle") is not None:
        names.append("cloudpickle")
    return names


def get_serializer(name: str | Serializer | None = None) -> Serializer:
    """Return the serializer called ``name``.

    Args:
        name: 'dill' (the default: pickle's speed, dill's reach), 'pickle' (the
            standard library's behaviour) or 'cloudpickle'.  None means the
            ``MULTIPROCESS_SERIALIZER`` environment variable, read now, or
            'dill' if it is unset or empty.  A :class:`Serializer` is returned
            as it is.

    Raises:
        ValueError: Unknown name.
        ImportError: 'cloudpickle' was asked for and is not installed.
    """
    from_env = name is None
    if from_env:
        name = _serializer_from_environ() or _DEFAULT_SERIALIZER
    serializer = _SERIALIZERS.get(name)  # type: ignore[arg-type]
    if serializer is None:
        if isinstance(name, Serializer):
            return name
        serializer = _SERIALIZERS.get(str(name).strip().lower())
        if serializer is None:
            source = f" (from the environment variable {SERIALIZER_ENV})" if from_env else ""
            raise ValueError(
                f"unknown serializer {name!r}{source}; "
                f"available: {', '.join(map(repr, available_serializers()))}"
            )
    serializer._check_available()
    return serializer


# ---------------------------------------------------------------------------
# Module-level entry points
# ---------------------------------------------------------------------------


def dumps(
    obj: Any,
    protocol: int | None = None,
    *,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    serializer: str | Serializer | None = None,
) -> bytes:
    """Serialize ``obj`` to bytes that :func:`loads` (or ``pickle.loads``) reads.

    Args:
        obj: The object.  With the default serializer, anything dill can pickle.
        protocol: Pickle protocol; None means :data:`DEFAULT_PROTOCOL` (5).
        buffer_callback: Protocol 5 out-of-band buffers: called with each
            :class:`pickle.PickleBuffer`; a falsy result sends it out of band
            (keep it and pass it to ``loads(..., buffers=...)``), a true result
            keeps it in the stream.  See also :func:`dumps_oob`.
        serializer: Name for :func:`get_serializer`; None means the
            ``MULTIPROCESS_SERIALIZER`` environment variable, else 'dill'.

    Raises:
        SerializationError: Neither pickle nor dill can serialize ``obj`` (with
            the 'pickle' or 'cloudpickle' serializer: their own errors).
    """
    return get_serializer(serializer).dumps(obj, protocol, buffer_callback)


def dump(
    obj: Any,
    file: IO[bytes],
    protocol: int | None = None,
    *,
    serializer: str | Serializer | None = None,
) -> None:
    """Write ``obj`` serialized to the binary ``file`` (see :func:`dumps`)."""
    get_serializer(serializer).dump(obj, file, protocol)


def loads(data: Any, *, buffers: Any | None = None) -> Any:
    """Return the object serialized in ``data`` (bytes-like).

    Any serializer's output loads here: this is the C unpickler.  Unpickling
    runs code chosen by whoever produced ``data``; only load data from peers
    that passed the authentication challenge.

    Args:
        data: What :func:`dumps` returned.
        buffers: The out-of-band buffers, in order, if any were sent.
    """
    return pickle.loads(data, buffers=buffers)


def dumps_oob(
    obj: Any,
    *,
    min_size: int = DEFAULT_OOB_MIN_SIZE,
    protocol: int | None = None,
    serializer: str | Serializer | None = None,
) -> tuple[bytes, list[memoryview]]:
    """Serialize ``obj``, keeping its large buffers out of the stream.

    Buffers of at least ``min_size`` bytes that support protocol 5 (numpy
    arrays, ``pickle.PickleBuffer``-wrapped bytearrays, memoryviews) are not
    copied: the returned memoryviews share the objects' memory, so send them
    before modifying ``obj``.  Rebuild with ``loads(data, buffers=buffers)``.

    Returns:
        The pickle stream and the out-of-band buffers, in order.

    Raises:
        ValueError: ``protocol`` is below 5.
    """
    if protocol is not None and protocol < 5:
        raise ValueError(f"out-of-band buffers need pickle protocol 5, not {protocol}")
    chosen = get_serializer(serializer)
    if chosen._plain_shortcut and _is_plain(obj):
        return _pickle_dumps(obj, DEFAULT_PROTOCOL if protocol is None else protocol), []
    out: list[memoryview] = []

    def callback(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < min_size:
            return True
        out.append(view)
        return False

    data = chosen._dumps_attempts(obj, protocol, callback, out.clear)
    return data, out


# ---------------------------------------------------------------------------
# Reducers registered for every serializer
# ---------------------------------------------------------------------------


def _reduce_method(m: types.MethodType) -> Any:
    # By name when that finds the same method again (the standard library's
    # way, right for classmethods); else by function and instance, as dill
    # does, for functions bound by hand (types.MethodType(f, obj)).
    name = m.__func__.__name__
    try:
        same = getattr(m.__self__, name) == m
    except Exception:  # noqa: BLE001 - then rebuild from function and instance
        same = False
    if same:
        return getattr, (m.__self__, name)
    return _rebuild_method, (m.__func__, m.__self__)


def _rebuild_method(func: Callable[..., Any], obj: Any) -> types.MethodType:
    return types.MethodType(func, obj)


def _reduce_method_descriptor(m: Any) -> Any:
    return getattr, (m.__objclass__, m.__name__)


def _reduce_memoryview(m: memoryview) -> Any:
    # pickle and dill both refuse memoryviews; send the bytes (out of band
    # when asked) with the format and shape to rebuild an equal view.
    fmt, shape = m.format, m.shape
    try:
        memoryview(b"").cast(fmt)  # type: ignore[call-overload]  # a format cast() restores
    except (TypeError, ValueError):
        fmt, shape = "B", (m.nbytes,)
    if not m.c_contiguous:
        m = memoryview(m.tobytes())
    return _rebuild_memoryview, (pickle.PickleBuffer(m), fmt, shape)


def _rebuild_memoryview(buffer: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buffer).cast("B")
    if fmt == "B" and len(shape) == 1:
        return view
    return view.cast(fmt, shape)  # type: ignore[call-overload]


register(types.MethodType, _reduce_method)
register(type(list.append), _reduce_method_descriptor)
register(type(int.__add__), _reduce_method_descriptor)
register(memoryview, _reduce_memoryview)


# ---------------------------------------------------------------------------
# Passing file descriptors (POSIX)
# ---------------------------------------------------------------------------


def sendfds(sock: socket.socket, fds: list[int]) -> None:
    """Send the file descriptors ``fds`` over the AF_UNIX socket ``sock``.

    The receiver gets duplicates (SCM_RIGHTS); the sender still owns ``fds``.
    """
    fds = list(fds)
    msg = bytes([len(fds) % 256])  # lets the receiver check that none was lost
    if hasattr(socket, "send_fds"):
        socket.send_fds(sock, [msg], fds)
    else:  # pragma: no cover - Python < 3.9
        sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    if ACKNOWLEDGE and sock.recv(1) != b"A":
        raise RuntimeError("the receiver did not acknowledge the file descriptors")


def recvfds(sock: socket.socket, size: int) -> list[int]:
    """Receive up to ``size`` file descriptors sent by :func:`sendfds` on ``sock``.

    Raises:
        EOFError: The peer closed the socket.
        RuntimeError: The message carried no descriptors, or not as many as sent.
    """
    itemsize = array.array("i").itemsize
    msg, ancdata, flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(size * itemsize))
    if not msg and not ancdata:
        raise EOFError("the peer closed the connection while file descriptors were expected")
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % itemsize])
    received = list(fds)
    try:
        if ACKNOWLEDGE:
            sock.send(b"A")
        if not received:
            raise RuntimeError(
                "received a message without file descriptors; the peer did not send "
                "them with sendfds() / send_handle()"
            )
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            raise RuntimeError(
                f"more than the {size} file descriptors expected were sent; "
                "the extra ones were dropped"
            )
        if not msg or len(received) % 256 != msg[0]:
            raise RuntimeError(
                f"received {len(received)} file descriptors, but the sender announced "
                f"{msg[0] if msg else 'none'} (mod 256)"
            )
    except BaseException:
        for fd in received:
            os.close(fd)
        raise
    return received


def send_handle(conn: Any, handle: int, destination_pid: int) -> None:
    """Send the file descriptor ``handle`` over the connection ``conn``.

    Args:
        conn: A Connection over an AF_UNIX socket (anything with ``fileno()``).
        handle: The file descriptor; the caller still owns (and closes) it.
        destination_pid: The receiving process (unused on POSIX).
    """
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        sendfds(s, [handle])


def recv_handle(conn: Any) -> int:
    """Receive a file descriptor sent with :func:`send_handle`; the caller owns it."""
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        return recvfds(s, 1)[0]


def DupFd(fd: int) -> Any:
    """Return a picklable stand-in for ``fd``; ``.detach()`` in the receiver opens it.

    While a launcher is serializing a child's start-up data, the launcher passes
    the descriptor along itself; otherwise the resource sharer of this process
    hands it to whoever connects for it.

    Raises:
        ValueError: This platform cannot pass file descriptors.
    """
    popen = get_spawning_popen()
    if popen is not None:
        return popen.DupFd(popen.duplicate_for_child(fd))
    if HAVE_SEND_HANDLE:
        # Imported while fork() waits (see _DILL_GUARD): a queue's feeder
        # thread may be the one pickling a socket or Connection.
        with _DILL_GUARD:
            from . import resource_sharer
        return resource_sharer.DupFd(fd)
    raise ValueError("cannot pass file descriptors: SCM_RIGHTS is not available here")


def _reduce_socket(s: socket.socket) -> Any:
    df = DupFd(s.fileno())
    return _rebuild_socket, (df, s.family, s.type, s.proto)


def _rebuild_socket(df: Any, family: int, type: int, proto: int) -> socket.socket:
    fd = df.detach()
    return socket.socket(family, type, proto, fileno=fd)


if sys.platform != "win32":
    register(socket.socket, _reduce_socket)


class AbstractReducer(metaclass=ABCMeta):
    """The standard library's bundle of this module's functions, as a class.

    ``ctx.reducer`` is this module; the class exists for code that names it.
    """

    ForkingPickler = ForkingPickler
    register = staticmethod(register)
    dump = staticmethod(dump)
    send_handle = staticmethod(send_handle)
    recv_handle = staticmethod(recv_handle)
    sendfds = staticmethod(sendfds)
    recvfds = staticmethod(recvfds)
    DupFd = staticmethod(DupFd)

    _reduce_method = staticmethod(_reduce_method)
    _reduce_method_descriptor = staticmethod(_reduce_method_descriptor)
    _reduce_socket = staticmethod(_reduce_socket)
    _rebuild_socket = staticmethod(_rebuild_socket)

    def __init__(self, *args: Any) -> None:
        register(types.MethodType, _reduce_method)
        register(type(list.append), _reduce_method_descriptor)
        register(type(int.__add__), _reduce_method_descriptor)
        register(socket.socket, _reduce_socket)
