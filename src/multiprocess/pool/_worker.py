"""The loop a pool's worker process runs (layer 5).

``worker`` reads task frames (see ``_wire``), keeps the last few functions
it was sent by key, runs each task and sends ``(ok, value)`` back in order.
The standard library's ``mapstar`` and ``starmapstar`` live here too.
Children find ``worker`` by reference, as ``multiprocess.pool.worker``.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from typing import Any, Callable

from .. import reduction, util
from ._exceptions import ExceptionWithTraceback, MaybeEncodingError
from ._notes import _failed_item
from ._wire import (
    _DEFAULT_SERIALIZER_CODE,
    _FUNCTION_CACHE_SIZE,
    _MAP,
    _MSG_READY,
    _MSG_STARTED,
    _ONE,
    _SERIALIZER_NAMES,
    _STARMAP,
    _TASK_HEADER,
    _FrameReader,
)


def mapstar(args: tuple[Callable[..., Any], Iterable[Any]]) -> list[Any]:
    """``list(map(func, iterable))`` for ``args == (func, iterable)``."""
    return list(map(*args))


def starmapstar(args: tuple[Callable[..., Any], Iterable[Any]]) -> list[Any]:
    """``list(itertools.starmap(func, iterable))`` for ``args == (func, iterable)``."""
    return list(itertools.starmap(args[0], args[1]))


def _run_task(func: Callable[..., Any], kind: int, payload: Any) -> Any:
    # A chunk's payload may be an iterator over it: see _task_items.
    if kind == _ONE:
        return func(payload)
    if kind == _MAP:
        return list(map(func, payload))
    if kind == _STARMAP:
        return list(itertools.starmap(func, payload))
    args, kwds = payload
    return func(*args, **kwds)


def _task_items(kind: int, payload: Any) -> Any:
    """What ``_run_task`` runs: an iterator over a chunk (its items left tell which
    one raised, see ``_notes._failed_item``), the payload itself otherwise."""
    return iter(payload) if kind == _MAP or kind == _STARMAP else payload


_NOT_RUN: Any = object()


class _UnloadableFunction:
    """Stands in for a call's function that could not be unpickled in the worker."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        raise self.error


def worker(
    tasks: Any,
    results: Any,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    maxtasks: int | None = None,
    wrap_exception: bool = True,
) -> None:
    """The loop a pool's worker process runs.

    Args:
        tasks: Connection the task frames arrive on.
        results: Connection the results go back on, in the order of the tasks.
        initializer, initargs: Called once, before the first task.
        maxtasks: Exit after this many tasks (None: never).
        wrap_exception: Send exceptions with their traceback (as ``__cause__``).
    """
    serializers: dict[int, reduction.Serializer] = {}

    def serializer(code: int) -> reduction.Serializer:
        found = serializers.get(code)
        if found is None:
            found = serializers[code] = reduction.get_serializer(_SERIALIZER_NAMES.get(code))
        return found

    def wrap(exc: BaseException, item: tuple[int, str] | None = None) -> Any:
        return ExceptionWithTraceback(exc, exc.__traceback__, item) if wrap_exception else exc

    def send(code: int, ok: Any, value: Any) -> None:
        try:
            data = serializer(code).dumps((ok, value))
        except Exception as e:  # noqa: BLE001 - any failure becomes the task's error
            inner = value.exc if isinstance(value, ExceptionWithTraceback) else value
            wrapped = MaybeEncodingError(e, inner)
            util.debug("possible encoding error while sending result: %s", wrapped)
            data = serializer(code).dumps((False, wrapped))
        results.send_bytes(data)

    try:
        results.send_bytes(_MSG_STARTED)
        if initializer is not None:
            try:
                initializer(*initargs)
            except Exception as e:  # noqa: BLE001 - reported to the parent, which breaks the pool
                send(_DEFAULT_SERIALIZER_CODE, None, ExceptionWithTraceback(e, e.__traceback__))
                return
        results.send_bytes(_MSG_READY)
        _serve(tasks, send, wrap, maxtasks)
    except BrokenPipeError:
        util.debug("worker's parent has gone -- exiting")


def _serve(
    tasks: Any,
    send: Callable[..., None],
    wrap: Callable[..., Any],
    maxtasks: int | None,
) -> None:
    """Run tasks until told to stop, the pipe closes or ``maxtasks`` are done."""

    functions: collections.OrderedDict[int, Any] = collections.OrderedDict()
    reader = _FrameReader(tasks.fileno())
    completed = 0
    while maxtasks is None or completed < maxtasks:
        try:
            frame = reader.next()
        except (EOFError, OSError):
            util.debug("worker got EOFError or OSError -- exiting")
            break
        if not frame:
            util.debug("worker got sentinel -- exiting")
            break
        view = memoryview(frame)
        key, kind, code, flen = _TASK_HEADER.unpack_from(view)
        start = _TASK_HEADER.size
        items = _NOT_RUN
        try:
            if flen:
                # A function we have not seen: keep it, evicting the oldest one
                # exactly as the coordinator's mirror of this cache does.
                try:
                    entry = reduction.loads(view[start : start + flen])
                except Exception as e:  # noqa: BLE001 - every task using it gets the error
                    entry = _UnloadableFunction(e)
                if len(functions) >= _FUNCTION_CACHE_SIZE:
                    functions.popitem(last=False)
                functions[key] = entry
                start += flen
            func = functions[key]
            payload: Any = reduction.loads(view[start:])
            # A chunk runs from an iterator: if it raises, its items left tell which one.
            items = iter(payload) if kind == _MAP or kind == _STARMAP else payload
            result: tuple[bool, Any] = (True, _run_task(func, kind, items))
        except Exception as e:  # noqa: BLE001 - the task's error, sent to the caller
            where = None
            if items is not _NOT_RUN and not isinstance(func, _UnloadableFunction):
                where = _failed_item(kind, payload, items)  # the function raised: for which item
            result = (False, wrap(e, where))
        send(code, *result)
        frame = view = func = payload = items = result = None  # type: ignore[assignment]
        completed += 1
    util.debug("worker exiting after %d tasks", completed)
