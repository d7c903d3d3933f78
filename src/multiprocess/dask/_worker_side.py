"""What runs on a Dask worker for a ``multiprocess.dask`` pool (layer 5).

Dask finds ``run_chunk`` by reference (this package must be installed on the
workers); everything else it gets is bytes that our serializer made, loaded
here by ``multiprocess.reduction``: Dask never pickles a user object its own
way, and a worker needs none of the caller's ``__main__``.  The chunk runs as
a pool's worker process runs it (``pool._worker``'s functions), and the
outcome goes back as the bytes of ``(ok, value)``:

  (True, result)                        the task's result
  (False, ExceptionWithTraceback)       it raised (the caller gets the worker's traceback)
  (None, ExceptionWithTraceback)        the pool's initializer raised on this worker

A worker process keeps, for the pools that used it, whether their initializer
ran, and the last few functions it loaded (a function is loaded once per
worker, however many chunks use it).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from .. import reduction
from ..pool._exceptions import ExceptionWithTraceback, MaybeEncodingError
from ..pool._notes import _failed_item
from ..pool._worker import _run_task, _task_items

# How many loaded functions a worker keeps (with what they hold: a partial over
# a large array stays loaded until evicted or its pool closes).
_FUNCTION_CACHE_SIZE = 8

_lock = threading.Lock()
_functions: collections.OrderedDict[str, Any] = collections.OrderedDict()
_initialized: dict[str, _Init] = {}


class _Init:
    """The initializer of one pool on this worker: run once, by the first chunk to come."""

    __slots__ = ("done", "error", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.error: BaseException | None = None


def _initialize(pool_id: str, init_data: bytes) -> BaseException | None:
    with _lock:
        state = _initialized.get(pool_id)
        if state is None:
            state = _initialized[pool_id] = _Init()
    # Other chunks of this pool wait for it; those of other pools do not.
    with state.lock:
        if not state.done:
            try:
                initializer, initargs = reduction.loads(init_data)
                initializer(*initargs)
            except BaseException as e:  # noqa: BLE001 - breaks the pool, on the caller's side
                state.error = e
            state.done = True
    return state.error


def _function(key: str, data: bytes) -> Any:
    with _lock:
        func = _functions.get(key)
        if func is not None:
            _functions.move_to_end(key)
            return func
    func = reduction.loads(data)  # outside the lock: it may be slow (a large partial)
    with _lock:
        _functions[key] = func
        while len(_functions) > _FUNCTION_CACHE_SIZE:
            _functions.popitem(last=False)
    return func


def forget_pool(pool_id: str) -> None:
    """Drop what this worker keeps for a pool (its functions, its initializer's state)."""
    with _lock:
        _initialized.pop(pool_id, None)
        for key in [k for k in _functions if k.startswith(pool_id)]:
            del _functions[key]


def run_chunk(
    pool_id: str,
    init_data: bytes | None,
    fkey: str,
    fdata: bytes,
    kind: int,
    serializer: str,
    body: bytes,
    subset: list[int] | None = None,
) -> bytes:
    """Run one task of a pool (an apply, one item, or a chunk) and return ``(ok, value)`` pickled.

    Args:
        pool_id: The pool's unique id (its initializer runs once per worker).
        init_data: ``(initializer, initargs)`` pickled, or None.
        fkey: The function's unique key (``pool_id`` first), for the worker's cache.
        fdata: The pickled function (Dask hands the bytes of a scattered one).
        kind: The task's kind (``pool._wire``: ``_APPLY``, ``_ONE``, ``_MAP``, ``_STARMAP``).
        serializer: The name of the serializer that pickles the result.
        body: The pickled payload.
        subset: The places in the chunk ``body`` of the items to run (a re-run
            after a worker died in it), or None: all.
    """
    dumps = reduction.get_serializer(serializer).dumps
    if init_data is not None:
        error = _initialize(pool_id, init_data)
        if error is not None:
            return dumps((None, ExceptionWithTraceback(error, error.__traceback__)))  # type: ignore[no-any-return]
    items: Any = None
    payload: Any = None
    try:
        func = _function(fkey, fdata)
        payload = reduction.loads(body)
        if subset is not None:
            payload = tuple(payload[i] for i in subset)
        items = _task_items(kind, payload)
        result: tuple[bool, Any] = (True, _run_task(func, kind, items))
    except BaseException as e:  # noqa: BLE001 - the task's error (a Dask worker is no child to end)
        where = _failed_item(kind, payload, items) if items is not None else None
        result = (False, ExceptionWithTraceback(e, e.__traceback__, where))
    try:
        return dumps(result)  # type: ignore[no-any-return]
    except BaseException as e:  # noqa: BLE001 - as a pool's worker: the task's error
        inner = result[1].exc if isinstance(result[1], ExceptionWithTraceback) else result[1]
        return dumps((False, MaybeEncodingError(e, inner)))  # type: ignore[no-any-return]
