"""The loop a pool's worker process runs (layer 5).

``worker`` reads task frames (see ``_wire``), keeps the last few functions
it was sent by key, runs each task and sends ``(ok, value)`` back in order.
The standard library's ``mapstar`` and ``starmapstar`` live here too.
Children find ``worker`` by reference, as ``multiprocess.pool.worker``.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import struct
import time
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import reduction, util
from ._exceptions import ExceptionWithTraceback, MaybeEncodingError
from ._limits import _peak_reader
from ._notes import _failed_item, _item_at
from ._oob import RESULT_MARK, Channel, OobError, decode, encode, pack, unpack, worker_end
from ._record import ITEM, PEAK, SEQ, _worker_view
from ._wire import (
    _CATCH_ALL,
    _COUNT,
    _DEFAULT_SERIALIZER_CODE,
    _FUNCTION_CACHE_SIZE,
    _MAP,
    _MSG_READY,
    _MSG_STARTED,
    _ONE,
    _OOB,
    _SERIALIZER_NAMES,
    _STARMAP,
    _SUBSET,
    _TASK_HEADER,
    _TIMED,
    _TRACKED,
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


def _run_tracked(
    func: Callable[..., Any], kind: int, payload: Any, rec: memoryview, at: int
) -> Any:
    """``_run_task`` for a tracked task: each item's index goes into the record first.

    ``rec[at]`` is the ``ITEM`` field of the worker's slot: a store per item
    (some 50 ns: which is why only tracked tasks pay it, see ``_TRACKED``), so
    that the coordinator knows which item of a chunk a worker that died was
    running (see ``_record``).
    """
    if kind == _MAP:
        out: list[Any] = []
        append = out.append
        for k, item in enumerate(payload):
            rec[at] = k
            append(func(item))
        return out
    if kind == _STARMAP:
        outs: list[Any] = []
        append = outs.append
        for k, args in enumerate(payload):
            rec[at] = k
            append(func(*args))
        return outs
    rec[at] = 0
    if kind == _ONE:
        return func(payload)
    args, kwds = payload
    return func(*args, **kwds)


def _run_timed(func: Callable[..., Any], kind: int, payload: Any, rec: memoryview, at: int) -> Any:
    """``_run_tracked`` for a task with a timeout: also when each item started.

    ``rec[at + 1]`` is the ``STARTED`` field, written before ``ITEM``, and
    back to 0 once the task ends (the coordinator reads it live).
    """
    clock = time.monotonic_ns
    started = at + 1
    try:
        if kind == _MAP or kind == _STARMAP:
            out: list[Any] = []
            append = out.append
            star = kind == _STARMAP
            for k, item in enumerate(payload):
                rec[started] = clock()
                rec[at] = k
                append(func(*item) if star else func(item))
            return out
        rec[started] = clock()
        rec[at] = 0
        if kind == _ONE:
            return func(payload)
        args, kwds = payload
        return func(*args, **kwds)
    finally:
        rec[started] = 0


# An item that ran for less than this (ns) is not checked against memory_limit
# on its own: it cannot have touched much memory (see _capped).
_PEAK_CHECK_NS = 1_000_000


def _capped(limit: int, rec: memoryview, at: int) -> Callable[[Callable[..., Any]], Any] | None:
    """What wraps each call's function in a worker of a pool with a ``memory_limit``.

    The pool reads its workers' resident memory every 0.1 s, which misses a
    spike that ends in between: so after each item that ran 1 ms or more, the
    worker reads its own peak.  Above ``limit``, it writes the peak to
    ``rec[at]`` (its record's ``PEAK``) and kills itself before it sends a
    result, and the pool fails that item with ``MemoryLimitError`` as if it
    had killed it (see ``_Dispatch._on_exit``).  None where the peak cannot
    be read (no /proc): the pool's reads alone apply.
    """
    peak = _peak_reader()
    if peak is None:
        return None
    clock = time.monotonic_ns

    def cap(func: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwds: Any) -> Any:
            started = clock()
            try:
                return func(*args, **kwds)
            finally:
                if clock() - started >= _PEAK_CHECK_NS:
                    size = peak()
                    if size > limit:
                        rec[at] = size
                        util.debug("worker above memory_limit (peak %d bytes): exiting", size)
                        os.kill(os.getpid(), signal.SIGKILL)
                        os._exit(1)  # not reached: SIGKILL cannot be caught

        return run

    return cap


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
    record: Any = None,
    slot: int = -1,
    side: Any = None,
    memory_limit: int | None = None,
) -> None:
    """The loop a pool's worker process runs.

    Args:
        tasks: Connection the task frames arrive on.
        results: Connection the results go back on, in the order of the tasks.
        initializer, initargs: Called once, before the first task.
        maxtasks: Exit after this many tasks (None: never).
        wrap_exception: Send exceptions with their traceback (as ``__cause__``).
        record, slot: The pool's shared record of its workers and this
            worker's slot in it (see ``_record``); None: untracked.
        side: Its end of the side channel for memfds (see ``_oob``), or None.
        memory_limit: The pool's ``memory_limit`` in bytes (see ``_capped``), or None.
    """
    channel = worker_end(side)
    serializers: dict[int, reduction.Serializer] = {}

    def serializer(code: int) -> reduction.Serializer:
        found = serializers.get(code)
        if found is None:
            found = serializers[code] = reduction.get_serializer(_SERIALIZER_NAMES.get(code))
        return found

    def wrap(exc: BaseException, item: tuple[int, str] | None = None) -> Any:
        return ExceptionWithTraceback(exc, exc.__traceback__, item) if wrap_exception else exc

    def dumps(code: int, result: tuple[Any, Any]) -> Any:
        if channel is None:
            return serializer(code).dumps(result)
        data, packed = pack(serializer(code), result)
        if packed is None:
            return data
        # Large: its memfds go first, then the frame that refers to them.
        return b"".join([RESULT_MARK, *encode(channel, None, packed)])

    def send(code: int, ok: Any, value: Any, catch_all: int = 0) -> None:
        try:
            data = dumps(code, (ok, value))
        except BaseException as e:  # any failure becomes the task's error
            if not isinstance(e, Exception):
                if not catch_all:
                    raise
                data = serializer(code).dumps((False, wrap(e)))
                results.send_bytes(data)
                return
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
        rec, base = _worker_view(record, slot)
        cap = None if memory_limit is None else _capped(memory_limit, rec, base + PEAK)
        _serve(tasks, send, wrap, maxtasks, rec, base, channel, cap)
    except BrokenPipeError:
        util.debug("worker's parent has gone -- exiting")


def _keep(functions: collections.OrderedDict[int, Any], key: int, entry: Any) -> None:
    """Keep a call's function, evicting the oldest exactly as the coordinator's mirror does."""
    if len(functions) >= _FUNCTION_CACHE_SIZE:
        functions.popitem(last=False)
    functions[key] = entry


def _serve(
    tasks: Any,
    send: Callable[..., None],
    wrap: Callable[..., Any],
    maxtasks: int | None,
    rec: memoryview,
    base: int,
    channel: Channel | None = None,
    cap: Callable[[Callable[..., Any]], Any] | None = None,
) -> None:
    """Run tasks until told to stop, the pipe closes or ``maxtasks`` are done.

    ``rec[base:]`` is this worker's slot of the pool's record (see ``_record``);
    ``cap`` wraps each function it is sent (see ``_capped``).
    """

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
        catch_all = kind & _CATCH_ALL
        if catch_all:
            kind ^= _CATCH_ALL
        oob = kind & _OOB
        if oob:
            kind ^= _OOB
        items = _NOT_RUN
        # A new task: its number (negative: its items are not tracked), after
        # its item is reset if they are (see _record).
        if kind < _TRACKED:
            rec[base + SEQ] = -1 - completed
        else:
            rec[base + ITEM] = -1
            rec[base + SEQ] = completed + 1
        try:
            if flen:
                # A function we have not seen: keep it, evicting the oldest one
                # exactly as the coordinator's mirror of this cache does.
                try:
                    entry = reduction.loads(view[start : start + flen])
                    if cap is not None:
                        entry = cap(entry)
                except Exception as e:  # noqa: BLE001 - every task using it gets the error
                    entry = _UnloadableFunction(e)
                _keep(functions, key, entry)
                start += flen
            subset = None
            if kind & _SUBSET:  # some items of a chunk, run again (see _wire)
                kind ^= _SUBSET
                (count,) = _COUNT.unpack_from(view, start)
                subset = struct.unpack_from(f"!{count}I", view, start + 4)
                start += 4 + 4 * count
            segments: list[Any] | None = None
            if oob:  # large data in memfds or after a table (see _oob)
                try:
                    fsegments, segments, start = decode(view, start, channel, True)
                except OobError as e:
                    if e.has_function:
                        _keep(functions, key, _UnloadableFunction(e))
                    raise
                if fsegments:
                    try:
                        entry = unpack(fsegments)
                        if cap is not None:
                            entry = cap(entry)
                    except Exception as e:  # noqa: BLE001 - every task using it gets the error
                        entry = _UnloadableFunction(e)
                    _keep(functions, key, entry)
                    fsegments = []
                if not segments:
                    segments = None
            func = functions[key]
            payload: Any = reduction.loads(view[start:]) if segments is None else unpack(segments)
            segments = None
            if subset is not None:
                payload = tuple(payload[i] for i in subset)
            if kind < _TRACKED:
                items = _task_items(kind, payload)
                value = _run_task(func, kind, items)
            elif kind & _TIMED:
                items = payload
                value = _run_timed(func, kind & 0x3F, payload, rec, base + ITEM)
            else:
                items = payload
                value = _run_tracked(func, kind & 0x3F, payload, rec, base + ITEM)
            result: tuple[bool, Any] = (True, value)
        except BaseException as e:  # the task's error, sent to the caller
            if not isinstance(e, Exception) and (not catch_all or items is _NOT_RUN):
                # SystemExit, KeyboardInterrupt end a Pool's worker, and an
                # executor's if raised before the call ran (unpickling its
                # arguments), as in the standard library.
                raise
            where = None
            if items is not _NOT_RUN and not isinstance(func, _UnloadableFunction):
                # The function raised: for which item (the record knows, if tracked).
                if kind < _TRACKED:
                    where = _failed_item(kind, payload, items)
                else:
                    where = _item_at(kind & 0x3F, payload, rec[base + ITEM])
            result = (False, wrap(e, where))
        send(code, *result, catch_all)
        frame = view = func = payload = items = result = value = entry = None  # type: ignore[assignment]
        completed += 1
    util.debug("worker exiting after %d tasks", completed)


# Known by the package's name, as before the package was split (see the package docstring).
for _public in (
    mapstar,
    starmapstar,
    worker,
):
    _public.__module__ = "multiprocess.pool"
del _public
