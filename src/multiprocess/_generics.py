"""``Generic``, ``Protocol``, ``TypeVar`` and ``overload`` at run time, without importing typing (layer 0).

Our generic classes (``Queue[T]``, ``Connection[S, R]``, ``ApplyResult[T]``,
...) are generic for type checkers alone.  Importing ``typing`` for them
would cost every short script, and every spawned or forkserver worker,
milliseconds at start-up that the standard library does not pay.  So a
module imports the real names under ``TYPE_CHECKING`` (what mypy reads) and
these stand-ins otherwise::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import Generic, TypeVar
    else:
        from ._generics import Generic, TypeVar

At run time ``class C(Generic[T])`` has a plain base, and ``C[int]`` is a
``types.GenericAlias``, as for the standard library's generic classes
(``multiprocessing.queues.Queue[int]``).
"""

from __future__ import annotations

import types

__all__ = ["Generic", "Protocol", "TypeVar", "overload"]


class TypeVar:
    """A type variable's name (type checkers read ``typing.TypeVar`` instead)."""

    __slots__ = ("__name__",)

    def __init__(self, name: str, *constraints: object, **options: object) -> None:
        self.__name__ = name

    def __repr__(self) -> str:
        return f"~{self.__name__}"


class Generic:
    """Base of a generic class: ``Generic[T]`` is this class, ``C[int]`` a GenericAlias."""

    __slots__ = ()

    def __class_getitem__(cls, params: object) -> object:
        if cls is Generic or cls is Protocol:  # a base: class C(Generic[T])
            return cls
        return types.GenericAlias(cls, params)


class Protocol(Generic):
    """Base of a protocol class (structural typing is for type checkers alone)."""

    __slots__ = ()


def overload(func: object) -> object:
    """``@overload`` signatures are for type checkers: the definition after them replaces them."""
    return func
