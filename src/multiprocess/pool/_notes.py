"""Errors that name the item: the note on an exception raised for one item of a map (layer 5).

An exception that the user's function raises for one item of ``map``,
``imap``, ``imap_unordered``, ``starmap`` (their async forms, and the
executor's ``map``) reaches the caller with its own type, the worker's
traceback as ``__cause__``, and a note such as
``in square(item 17 of map: 'abc')``.

Who knows what: the worker knows which item of its chunk failed (the
position in the chunk and the item itself, see ``_failed_item``), and sends
that along with the exception (``ExceptionWithTraceback.item``, unpickled as
``RemoteTraceback.item``); the coordinator knows the call and where the
chunk starts in it, and writes the note (``name_item``).  A thread pool
does both at once.  Nothing of this runs for a task that succeeds.

On Python 3.11+ the note is added with ``add_note``.  Before, ``__notes__``
is set all the same, and when the message is a single string (and the class
prints it as is) the note is appended to it, so that ``str()`` and the
printed traceback show it; other exceptions keep their arguments untouched.
"""

from __future__ import annotations

import operator
import reprlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

from ._exceptions import RemoteTraceback, _callable_name
from ._wire import _APPLY, _ONE

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlevel = 3


def _short_item_repr(item: Any) -> str:
    try:
        return _repr.repr(item)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        return f"<{type(item).__qualname__} object>"


def _failed_item(kind: int, payload: Any, items: Any) -> tuple[int, str] | None:
    """(position in its task, short repr) of the item whose call raised, or None.

    ``items`` is the iterator the chunk was run from (see ``_worker._run_task``):
    the item that raised was the last one it gave, so the items it has left
    tell which one that was.
    """
    if kind == _APPLY:
        return None
    if kind == _ONE:
        return 0, _short_item_repr(payload)
    return _item_at(kind, payload, len(payload) - operator.length_hint(items) - 1)


def _item_at(kind: int, payload: Any, offset: int) -> tuple[int, str] | None:
    """(offset, short repr) of item ``offset`` of the task, where it is known otherwise
    (a record of the item each worker runs); None for no item."""
    if kind == _APPLY:
        return None
    if kind == _ONE:
        return 0, _short_item_repr(payload)
    if not 0 <= offset < len(payload):
        return None
    return offset, _short_item_repr(payload[offset])


def item_note(func: Any, api: str, position: int, item_repr: str) -> str:
    """The note: ``in square(item 17 of map: 'abc')``."""
    return f"in {_callable_name(func)}(item {position} of {api}: {item_repr})"


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, or its equivalent before Python 3.11 (see the module docstring)."""
    method = getattr(exc, "add_note", None)
    if method is not None:
        method(note)
    else:
        _append_note(exc, note)


def _append_note(exc: BaseException, note: str) -> None:
    """``add_note`` before Python 3.11: ``__notes__``, and the message if it is one string."""
    try:
        notes = exc.__dict__.setdefault("__notes__", [])
        notes.append(note)
    except (AttributeError, TypeError):
        return
    args = exc.args
    if len(args) == 1 and isinstance(args[0], str) and type(exc).__str__ is BaseException.__str__:
        exc.args = (f"{args[0]}\n{note}",)


def name_item(
    exc: BaseException,
    job: Any,
    index: int,
    where: Any = None,
    offsets: list[int] | None = None,
) -> None:
    """Note on ``exc``, the error of task ``index`` of ``job``, which item raised it.

    ``where`` is what ``_failed_item`` found (a thread pool passes it); by
    default it is what the worker sent with the exception.  ``offsets`` maps
    the items of a task that re-runs part of a chunk to their places in it.  Only an exception
    that the function raised for an item gets a note; faults of the pool (a
    dead worker, a result that could not be pickled) are not the item's.
    """
    if where is None:
        cause = exc.__cause__
        if not isinstance(cause, RemoteTraceback):
            return
        where = getattr(cause, "item", None)
        if where is None:
            return
    offset, item_repr = where
    if offsets is not None:
        offset = offsets[offset]
    position = index if job.kind == _ONE else index * job.chunksize + offset
    position += getattr(job, "first", 0)
    add_note(exc, item_note(job.func, job.api, position, item_repr))
