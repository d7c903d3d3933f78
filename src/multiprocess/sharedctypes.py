"""ctypes objects in shared memory, optionally synchronized by a lock (layer 4).

``RawValue`` and ``RawArray`` return ordinary ctypes objects whose memory is a
block of the shared heap (``heap.BufferWrapper``); ``Value`` and ``Array``
wrap them with a lock::

    Value('i', 0)        Synchronized        .value under the lock
    Array('d', 10)       SynchronizedArray   items and slices under the lock
    Array('c', 10)       SynchronizedString  + .value and .raw
    Value(MyStructure)   SynchronizedMyStructure, one property per field

A type is an ``array``-module typecode (``'i'``, ``'d'``, ``'c'``...) or a
ctypes type.  Memory is zero-filled before the initial values are written.

Like the standard library's, these objects reach children by inheritance only:
passed to a ``Process`` (or, for the wrappers, pickled while a child starts),
they are shared; sent through a Pipe or Queue they raise RuntimeError (and
``pickle.dumps`` refuses them too).  ``copy.copy`` of a raw object copies its bytes into
private memory; :func:`copy` copies them into new shared memory.
"""

from __future__ import annotations

import ctypes
import pickle
import sys

from . import context, heap, reduction
from ._spawning import assert_spawning

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from _ctypes import _CData as _CDataType
    from collections.abc import Iterable, Sequence
    from ctypes import _SimpleCData, c_char
    from typing import Any, Generic, Literal, TypeVar, Union, overload

    from . import synchronize

    _LockLike = Union[synchronize.Lock, synchronize.RLock]
    _CT = TypeVar("_CT", bound=_CDataType)
else:
    from ._generics import Generic, TypeVar, overload

_T = TypeVar("_T")

__all__ = ["Array", "RawArray", "RawValue", "Value", "copy", "synchronized"]

typecode_to_type: dict[str, Any] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}

_CData = ctypes.c_int.__mro__[-2]  # ctypes' base of every data type (_CData)


def _resolve_type(typecode_or_type: Any) -> Any:
    """The ctypes type a typecode names, or the ctypes type itself."""
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError(
                f"bad typecode {typecode_or_type!r} (must be one of "
                f"{''.join(typecode_to_type)!r} or a ctypes type)"
            ) from None
    if isinstance(typecode_or_type, type) and issubclass(typecode_or_type, _CData):
        return typecode_or_type
    raise TypeError(
        f"expected a typecode (one of {''.join(typecode_to_type)!r}) or a ctypes "
        f"type, not {typecode_or_type!r}"
    )


#
# Raw objects: ctypes objects over a block of the shared heap
#


def _new_value(type_: Any) -> Any:
    """A zero-filled object of ctypes type ``type_`` in shared memory."""
    wrapper = heap.BufferWrapper(ctypes.sizeof(type_))
    obj = _attach(type_, wrapper)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    return obj


# The overloads of these four functions give the types typeshed gives the
# standard library's (see BaseContext's methods of the same names).
@overload
def RawValue(typecode_or_type: type[_CT], *args: Any) -> _CT: ...
@overload
def RawValue(typecode_or_type: str, *args: Any) -> Any: ...
def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """Return a ctypes object in shared memory, initialized with ``args``.

    Args:
        typecode_or_type: An ``array`` typecode or a ctypes type.
        *args: Passed to the type's constructor (none: zero).

    Raises:
        TypeError: Not a typecode or ctypes type, or bad initial values.
    """
    type_ = _resolve_type(typecode_or_type)
    obj = _new_value(type_)
    if args:
        obj.__init__(*args)
    return obj


@overload
def RawArray(
    typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any]
) -> ctypes.Array[_CT]: ...
@overload
def RawArray(typecode_or_type: str, size_or_initializer: int | Sequence[Any]) -> Any: ...
def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """Return a ctypes array in shared memory.

    Args:
        typecode_or_type: The element type: an ``array`` typecode or a ctypes type.
        size_or_initializer: The length (the array is zero-filled), or an
            iterable whose items initialize the array and set its length.

    Raises:
        TypeError: Not a typecode or ctypes type, or bad items.
        ValueError: A negative length.
    """
    type_ = _resolve_type(typecode_or_type)
    if isinstance(size_or_initializer, int):
        if size_or_initializer < 0:
            raise ValueError(f"array size must be >= 0, not {size_or_initializer}")
        return _new_value(type_ * size_or_initializer)
    if not hasattr(size_or_initializer, "__len__"):
        size_or_initializer = list(size_or_initializer)
    result = _new_value(type_ * len(size_or_initializer))
    result.__init__(*size_or_initializer)
    return result


#
# Synchronized objects
#


def _resolve_lock(lock: Any, ctx: Any) -> Any:
    """The lock to use for ``lock=`` (True or None: a new RLock of ``ctx``)."""
    if lock is True or lock is None:
        return _context(ctx).RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def _context(ctx: Any) -> Any:
    if ctx is None:
        ctx = context._default_context
    return ctx.get_context()


@overload
def Value(
    typecode_or_type: type[_SimpleCData[_T]],
    *args: Any,
    lock: Literal[True] | _LockLike = True,
    ctx: Any = None,
) -> Synchronized[_T]: ...
@overload
def Value(
    typecode_or_type: type[_CT], *args: Any, lock: Literal[False], ctx: Any = None
) -> _CT: ...
@overload
def Value(
    typecode_or_type: str, *args: Any, lock: Literal[True] | _LockLike = True, ctx: Any = None
) -> Synchronized[Any]: ...
@overload
def Value(
    typecode_or_type: str | type[_CDataType],
    *args: Any,
    lock: bool | _LockLike = True,
    ctx: Any = None,
) -> Any: ...
def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None) -> Any:
    """Return a ctypes object in shared memory, wrapped with a lock.

    Args:
        typecode_or_type: An ``array`` typecode or a ctypes type.
        *args: Passed to the type's constructor.
        lock: True or None for a new ``RLock`` (of ``ctx``), a lock object to
            use, or False for the raw object without a wrapper.
        ctx: The context whose ``RLock`` is made (default: the package's).

    Raises:
        AttributeError: ``lock`` is not a lock (has no ``acquire``).
    """
    if lock is False:
        return RawValue(typecode_or_type, *args)
    lock = _resolve_lock(lock, ctx)
    return synchronized(RawValue(typecode_or_type, *args), lock, ctx=ctx)


@overload
def Array(
    typecode_or_type: type[c_char],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Literal[True] | _LockLike = True,
    ctx: Any = None,
) -> SynchronizedString: ...
@overload
def Array(
    typecode_or_type: type[_SimpleCData[_T]],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Literal[True] | _LockLike = True,
    ctx: Any = None,
) -> SynchronizedArray[_T]: ...
@overload
def Array(
    typecode_or_type: type[_CT],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Literal[False],
    ctx: Any = None,
) -> ctypes.Array[_CT]: ...
@overload
def Array(
    typecode_or_type: str,
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Literal[True] | _LockLike = True,
    ctx: Any = None,
) -> SynchronizedArray[Any]: ...
@overload
def Array(
    typecode_or_type: str | type[_CDataType],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: bool | _LockLike = True,
    ctx: Any = None,
) -> Any: ...
def Array(
    typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: Any = None
) -> Any:
    """Return a ctypes array in shared memory, wrapped with a lock.

    Arguments are those of :func:`RawArray`, plus ``lock`` and ``ctx`` as for
    :func:`Value`.  An array of ``'c'`` (``ctypes.c_char``) is wrapped in a
    :class:`SynchronizedString`, which adds ``value`` and ``raw``.
    """
    if lock is False:
        return RawArray(typecode_or_type, size_or_initializer)
    lock = _resolve_lock(lock, ctx)
    return synchronized(RawArray(typecode_or_type, size_or_initializer), lock, ctx=ctx)


def copy(obj: Any) -> Any:
    """Return a raw shared-memory copy of the ctypes object ``obj`` (or of a wrapper's)."""
    if isinstance(obj, SynchronizedBase):
        with obj:
            return copy(obj.get_obj())
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


@overload
def synchronized(
    obj: _SimpleCData[_T], lock: _LockLike | None = None, ctx: Any = None
) -> Synchronized[_T]: ...
@overload
def synchronized(
    obj: ctypes.Array[c_char], lock: _LockLike | None = None, ctx: Any = None
) -> SynchronizedString: ...
@overload
def synchronized(
    obj: ctypes.Array[_SimpleCData[_T]], lock: _LockLike | None = None, ctx: Any = None
) -> SynchronizedArray[_T]: ...
@overload
def synchronized(obj: Any, lock: _LockLike | None = None, ctx: Any = None) -> SynchronizedBase: ...
def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> SynchronizedBase:
    """Wrap the ctypes object ``obj`` so that every access holds ``lock``.

    Args:
        obj: A ctypes object (normally from :func:`RawValue` / :func:`RawArray`).
        lock: The lock; None for a new ``RLock`` of ``ctx``.
        ctx: The context whose ``RLock`` is made (default: the package's).

    Raises:
        TypeError: ``obj`` is already synchronized.
    """
    if isinstance(obj, SynchronizedBase):
        raise TypeError("object already synchronized")
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    return _synchronized_class(type(obj))(obj, lock, ctx)


class SynchronizedBase:
    """A ctypes object and the lock that guards it; a context manager for the lock.

    ``acquire()`` and ``release()`` are the lock's.  The wrapper can be passed
    to a child process (inherited or pickled at start-up), not sent over a
    Pipe or Queue (RuntimeError).
    """

    def __init__(self, obj: Any, lock: Any = None, ctx: Any = None) -> None:
        self._obj = obj
        if lock is None or lock is True or lock is False:
            lock = _context(ctx).RLock()
        elif not hasattr(lock, "acquire"):
            raise AttributeError(f"{lock!r} has no method 'acquire'")
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> Any:
        return self._lock.__exit__(*args)

    def __reduce__(self) -> Any:
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def get_obj(self) -> Any:
        """Return the wrapped ctypes object (accessing it does not take the lock)."""
        return self._obj

    def get_lock(self) -> Any:
        """Return the lock."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj}>"


class _Locked:
    """A descriptor: the attribute ``name`` of the wrapped object, under the lock."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, wrapper: Any, owner: Any = None) -> Any:
        if wrapper is None:
            return self
        with wrapper:
            return getattr(wrapper._obj, self.name)

    def __set__(self, wrapper: Any, value: Any) -> None:
        with wrapper:
            setattr(wrapper._obj, self.name, value)


class Synchronized(SynchronizedBase, Generic[_T]):
    """A synchronized ctypes scalar: ``value`` is read and written under the lock.

    ``Synchronized[int]`` is what ``Value(ctypes.c_int)`` returns (for type checkers).
    """

    if TYPE_CHECKING:
        value: _T

        def get_obj(self) -> _SimpleCData[_T]: ...
    else:
        value = _Locked("value")


class SynchronizedArray(SynchronizedBase, Generic[_T]):
    """A synchronized ctypes array: items and slices are accessed under the lock.

    ``SynchronizedArray[float]`` is what ``Array(ctypes.c_double, n)`` returns.
    """

    def __len__(self) -> int:
        return len(self._obj)

    @overload
    def __getitem__(self, i: slice) -> list[_T]: ...
    @overload
    def __getitem__(self, i: int) -> _T: ...
    def __getitem__(self, i: Any) -> Any:
        with self:
            return self._obj[i]

    @overload
    def __setitem__(self, i: slice, value: Iterable[_T]) -> None: ...
    @overload
    def __setitem__(self, i: int, value: _T) -> None: ...
    def __setitem__(self, i: Any, value: Any) -> None:
        with self:
            self._obj[i] = value

    # Python 2 names, kept for code written against the standard library.
    def __getslice__(self, start: int, stop: int) -> Any:
        return self[start:stop]

    def __setslice__(self, start: int, stop: int, values: Sequence[Any]) -> None:
        self[start:stop] = values


class SynchronizedString(SynchronizedArray[bytes]):
    """A synchronized array of ``c_char``, with ``value`` (up to NUL) and ``raw``."""

    if TYPE_CHECKING:
        value: bytes
        raw: bytes
    else:
        value = _Locked("value")
        raw = _Locked("raw")


_class_cache: dict[type, type] = {}
class_cache = _class_cache  # the standard library's name


def _synchronized_class(cls: type) -> type:
    """The wrapper class of a Structure or Union type: one locked property per field."""
    try:
        return _class_cache[cls]
    except KeyError:
        pass
    names = []
    for klass in reversed(cls.__mro__):
        for field in klass.__dict__.get("_fields_", ()):
            if field[0] not in names:
                names.append(field[0])
    namespace: dict[str, Any] = {name: _Locked(name) for name in names}
    namespace["__module__"] = __name__
    scls = _class_cache[cls] = type("Synchronized" + cls.__name__, (SynchronizedBase,), namespace)
    return scls


#
# Pickling: shared objects travel as (type, heap block), to children only
#

if TYPE_CHECKING:
    _TypeDescription = tuple[Any, tuple[int, ...]]

# The ctypes types registered with reduction.register (a registration is for
# one exact type; ctypes makes one type per array length).
_registered_types: set = set()


class _MainTypeName(str):
    """The qualified name of a ctypes type defined in ``__main__``."""


def _describe_type(type_: Any) -> _TypeDescription:
    """How a ctypes type travels: (element type, lengths).

    Array types are made on the fly and have no importable name, so an array
    type travels as its element type and lengths.  A type defined in
    ``__main__`` travels as its name: dill cannot pickle ctypes types by value
    (their metaclasses have no importable name either), and spawn and
    forkserver children run the main module as ``__main__`` too.
    """
    lengths: list[int] = []
    while isinstance(type_, type) and issubclass(type_, ctypes.Array):
        lengths.append(type_._length_)  # type: ignore[arg-type]
        type_ = type_._type_
    if getattr(type_, "__module__", None) == "__main__":
        type_ = _MainTypeName(type_.__qualname__)
    return type_, tuple(lengths)


def _build_type(description: _TypeDescription) -> Any:
    type_, lengths = description
    if isinstance(type_, _MainTypeName):
        type_ = _find_main_type(type_)
    for length in reversed(lengths):
        type_ = type_ * length
    return type_


def _find_main_type(qualname: str) -> Any:
    found: Any = sys.modules["__main__"]
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise AttributeError(
            f"cannot find the ctypes type {qualname!r} in the __main__ module of this "
            "process; define the types of shared ctypes objects at the top level of the "
            "script or in an importable module"
        ) from None
    return found


def _rebuild_ctype(description: _TypeDescription, wrapper: heap.BufferWrapper) -> Any:
    """The ctypes object described, over the memory of ``wrapper``."""
    return _attach(_build_type(description), wrapper)


def _attach(type_: Any, wrapper: heap.BufferWrapper) -> Any:
    """An object of ctypes type ``type_`` over the memory of ``wrapper``."""
    if type_ not in _registered_types:
        reduction.register(type_, reduce_ctype)
        _registered_types.add(type_)
    obj = type_.from_buffer(wrapper.create_memoryview())
    obj._wrapper = wrapper  # keeps the block allocated while obj lives
    return obj


def reduce_ctype(obj: Any) -> Any:
    """Reduce a ctypes object: a shared one by its heap block (to a starting
    child only, else RuntimeError), any other one by copying its bytes."""
    wrapper = obj.__dict__.get("_wrapper") if hasattr(obj, "__dict__") else None
    if not isinstance(wrapper, heap.BufferWrapper):
        reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # refuses pointers
        if isinstance(obj, ctypes.Array):
            # ctypes would pickle the array type by name, which it has not.
            return _array_copy, (_describe_type(type(obj)), bytes(obj))
        return reduced
    assert_spawning(obj)
    return _rebuild_ctype, (_describe_type(type(obj)), wrapper)


def _array_copy(description: _TypeDescription, data: bytes) -> Any:
    return _build_type(description).from_buffer_copy(data)


def rebuild_ctype(type_: Any, wrapper: heap.BufferWrapper, length: int | None) -> Any:
    """The standard library's signature of :func:`_rebuild_ctype`."""
    if length is not None:
        type_ = type_ * length
    return _attach(type_, wrapper)
