"""User code of the public API, checked by mypy --strict in tests/test_typing.py (never run).

Each ``reveal_type`` line ends with a comment ``R: <type>``: what mypy must
infer (without its ``builtins.`` prefixes).  At least what typeshed gives for the standard
library's ``multiprocessing`` and ``concurrent.futures``, plus our own keyword
arguments (``progress``, ``task_timeout``...).
"""

from __future__ import annotations

import ctypes
import types
from collections.abc import Iterator

from typing_extensions import reveal_type  # installed with mypy; this file is never run

import multiprocess as mp
import multiprocess.dummy
from multiprocess import sharedctypes
from multiprocess.connection import Connection
from multiprocess.futures import ProcessPoolExecutor, get_reusable_executor
from multiprocess.managers import SharedMemoryManager, SyncManager
from multiprocess.pool import AsyncResult, IMapIterator, Pool, ResultIterator, ThreadPool
from multiprocess.queues import Queue

# The expectations are long: the formatter must not move them off their lines.
# fmt: off


def square(x: int) -> str:
    return str(x * x)


def divide(a: int, b: int) -> float:
    return a / b


def on_result(value: str) -> None:
    pass


def pool_calls(ints: list[int]) -> None:
    with mp.Pool(2) as p:
        reveal_type(p)  # R: multiprocess.pool._pool.Pool
        reveal_type(p.map(square, ints))  # R: list[str]
        reveal_type(p.map(square, ints, 4, progress=True, task_timeout=1.0))  # R: list[str]
        reveal_type(p.imap(square, ints))  # R: multiprocess.pool._results.IMapIterator[str]
        reveal_type(p.imap(square, ints).next(timeout=1.0))  # R: str
        reveal_type(next(p.imap(square, iter(ints))))  # R: str
        reveal_type(p.imap(square, ints, 8))  # R: multiprocess.pool._results.ResultIterator[str]
        reveal_type(p.imap_unordered(square, ints))  # R: multiprocess.pool._results.IMapUnorderedIterator[str]
        reveal_type(p.starmap(divide, [(1, 2)]))  # R: list[float]
        reveal_type(p.apply(square, (3,)))  # R: str
        reveal_type(p.apply(square, (3,), task_timeout=2))  # R: str
        reveal_type(p.apply_async(square, (3,), callback=on_result))  # R: multiprocess.pool._results.ApplyResult[str]
        reveal_type(p.apply_async(square, (3,)).get(timeout=1))  # R: str
        reveal_type(p.map_async(square, ints))  # R: multiprocess.pool._results.MapResult[str]
        reveal_type(p.map_async(square, ints).get())  # R: list[str]
        reveal_type(p.starmap_async(divide, [(1, 2)]).get())  # R: list[float]
        for s in p.imap_unordered(square, ints, chunksize=3):
            reveal_type(s)  # R: str
        result: AsyncResult[str] = p.apply_async(square, (1,))
        it: IMapIterator[str] = p.imap(square, ints)
        chunked: ResultIterator[str] = p.imap(square, ints, 2)
        plain: Iterator[str] = p.imap(square, ints, 2)
        ordered: Iterator[str] = p.imap(square, ints)
        reveal_type(p.apply(divide, kwds=types.MappingProxyType({"a": 1, "b": 2})))  # R: float
        del result, it, chunked, plain, ordered


async def pool_in_a_coroutine(p: Pool) -> None:
    reveal_type(await p.apply_async(square, (3,)))  # R: str
    reveal_type(await p.map_async(square, [1]))  # R: list[str]
    async for s in p.imap(square, [1, 2]):
        reveal_type(s)  # R: str


def contexts() -> None:
    reveal_type(mp.get_context())  # R: multiprocess.context.BaseContext
    reveal_type(mp.get_context("spawn"))  # R: multiprocess.context.SpawnContext
    reveal_type(mp.get_context("fork"))  # R: multiprocess.context.ForkContext
    reveal_type(mp.get_context("forkserver"))  # R: multiprocess.context.ForkServerContext
    ctx = mp.get_context("spawn")
    reveal_type(ctx.Pool(2, task_timeout=5.0))  # R: multiprocess.pool._pool.Pool
    reveal_type(ctx.Pool().map(square, [1]))  # R: list[str]
    reveal_type(ctx.Process)  # R: type[multiprocess.context.SpawnProcess]
    reveal_type(ctx.Queue())  # R: multiprocess.queues.Queue[Any]
    reveal_type(ctx.Manager())  # R: multiprocess.managers.SyncManager
    reveal_type(ctx.ProcessPoolExecutor(2))  # R: multiprocess.futures.ProcessPoolExecutor
    reveal_type(mp.get_start_method())  # R: str
    reveal_type(mp.get_start_method(allow_none=True))  # R: str | None
    reveal_type(mp.get_all_start_methods())  # R: list[str]
    reveal_type(mp.cpu_count())  # R: int
    reveal_type(mp.current_process())  # R: multiprocess.process.BaseProcess
    reveal_type(mp.parent_process())  # R: multiprocess.process.BaseProcess | None
    reveal_type(mp.active_children())  # R: list[multiprocess.process.BaseProcess]
    reveal_type(mp.get_logger())  # R: logging.Logger


def processes_and_channels() -> None:
    p = mp.Process(target=square, args=(1,))
    reveal_type(p)  # R: multiprocess.context.Process
    reveal_type(p.exitcode)  # R: int | None
    reveal_type(mp.Queue())  # R: multiprocess.queues.Queue[Any]
    q: Queue[int] = mp.Queue()
    reveal_type(q.get())  # R: int
    reveal_type(q.get(timeout=1.0))  # R: int
    reveal_type(mp.JoinableQueue())  # R: multiprocess.queues.JoinableQueue[Any]
    reveal_type(mp.SimpleQueue())  # R: multiprocess.queues.SimpleQueue[Any]
    reveal_type(mp.Pipe())  # R: tuple[multiprocess.connection.Connection[Any, Any], multiprocess.connection.Connection[Any, Any]]
    a, _b = mp.Pipe(duplex=False)
    reveal_type(a.recv())  # R: Any
    ints_in: Connection[int, str] = a
    reveal_type(ints_in.recv())  # R: str
    ints_in.send(1)
    reveal_type(mp.Lock())  # R: multiprocess.synchronize.Lock
    reveal_type(mp.RLock())  # R: multiprocess.synchronize.RLock
    reveal_type(mp.Event())  # R: multiprocess.synchronize.Event
    reveal_type(mp.Semaphore(2))  # R: multiprocess.synchronize.Semaphore
    reveal_type(mp.BoundedSemaphore(2))  # R: multiprocess.synchronize.BoundedSemaphore
    reveal_type(mp.Condition())  # R: multiprocess.synchronize.Condition
    reveal_type(mp.Barrier(2))  # R: multiprocess.synchronize.Barrier


def shared_ctypes() -> None:
    reveal_type(mp.Value(ctypes.c_int, 1))  # R: multiprocess.sharedctypes.Synchronized[int]
    reveal_type(mp.Value(ctypes.c_double, 1.0).value)  # R: float
    reveal_type(mp.Value("i", 1))  # R: multiprocess.sharedctypes.Synchronized[Any]
    reveal_type(mp.Value(ctypes.c_int, 1, lock=False))  # R: ctypes.c_int
    reveal_type(mp.Array(ctypes.c_double, 3))  # R: multiprocess.sharedctypes.SynchronizedArray[float]
    reveal_type(mp.Array(ctypes.c_double, 3)[0])  # R: float
    reveal_type(mp.Array(ctypes.c_double, 3)[:2])  # R: list[float]
    reveal_type(mp.Array("i", [1, 2]))  # R: multiprocess.sharedctypes.SynchronizedArray[Any]
    reveal_type(mp.Array(ctypes.c_char, 8))  # R: multiprocess.sharedctypes.SynchronizedString
    reveal_type(mp.Array(ctypes.c_char, 8).value)  # R: bytes
    reveal_type(mp.RawValue(ctypes.c_int, 1))  # R: ctypes.c_int
    reveal_type(mp.RawArray(ctypes.c_int, 3))  # R: _ctypes.Array[ctypes.c_int]
    reveal_type(sharedctypes.Value(ctypes.c_int, 1))  # R: multiprocess.sharedctypes.Synchronized[int]
    reveal_type(sharedctypes.Array(ctypes.c_double, 2))  # R: multiprocess.sharedctypes.SynchronizedArray[float]
    reveal_type(sharedctypes.RawValue(ctypes.c_int))  # R: ctypes.c_int
    reveal_type(sharedctypes.synchronized(ctypes.c_int(1)))  # R: multiprocess.sharedctypes.Synchronized[int]


def managers() -> None:
    reveal_type(mp.Manager())  # R: multiprocess.managers.SyncManager
    with mp.Manager() as m:
        reveal_type(m)  # R: multiprocess.managers.SyncManager
        reveal_type(m.list([1, 2]))  # R: multiprocess._proxytypes.ListProxy[int]
        reveal_type(m.list([1, 2])[0])  # R: int
        reveal_type(m.list())  # R: multiprocess._proxytypes.ListProxy[Any]
        reveal_type(m.dict({"a": 1.0}))  # R: multiprocess._proxytypes.DictProxy[str, float]
        reveal_type(m.dict({"a": 1.0})["a"])  # R: float
        reveal_type(m.dict(a=1).get("a"))  # R: int | None
        reveal_type(m.dict({"a": 1.0}).items())  # R: list[tuple[str, float]]
        reveal_type(m.set({b"x"}))  # R: multiprocess._proxytypes.SetProxy[bytes]
        reveal_type(m.Value("i", 3))  # R: multiprocess.managers.ValueProxy[int]
        reveal_type(m.Value("i", 3).value)  # R: int
        reveal_type(m.Array("d", [1.0]))  # R: typing.Sequence[float]
        reveal_type(m.Queue())  # R: queue.Queue[Any]
        reveal_type(m.Lock().acquire(timeout=1))  # R: bool
        reveal_type(m.Event())  # R: threading.Event
        reveal_type(m.Namespace(x=1).x)  # R: Any
        reveal_type(m.Pool(2).map(square, [1]))  # R: list[str]
    manager: SyncManager = SyncManager()
    del manager
    with SharedMemoryManager() as smm:
        reveal_type(smm.SharedMemory(64))  # R: multiprocess.shared_memory.SharedMemory
        reveal_type(smm.ShareableList([1, 2]))  # R: multiprocess.shared_memory.ShareableList


def executors(ints: list[int]) -> None:
    with ProcessPoolExecutor(2, task_timeout=10) as ex:
        reveal_type(ex)  # R: multiprocess.futures.ProcessPoolExecutor
        reveal_type(ex.submit(square, 3))  # R: concurrent.futures._base.Future[str]
        reveal_type(ex.submit(square, 3).result())  # R: str
        reveal_type(ex.schedule(square, (3,), task_timeout=1.0))  # R: concurrent.futures._base.Future[str]
        reveal_type(ex.map(square, ints))  # R: typing.Iterator[str]
        reveal_type(ex.map(divide, ints, ints, chunksize=4))  # R: typing.Iterator[float]
        reveal_type(ex.map(square, ints, buffersize=2, progress=True))  # R: typing.Iterator[str]
    reveal_type(get_reusable_executor(2))  # R: multiprocess.futures.ProcessPoolExecutor
    reveal_type(get_reusable_executor().submit(divide, 1, 2))  # R: concurrent.futures._base.Future[float]


def thread_pools(ints: list[int]) -> None:
    reveal_type(multiprocess.dummy.Pool(2))  # R: multiprocess.pool._pool.ThreadPool
    with ThreadPool(2) as tp:
        reveal_type(tp)  # R: multiprocess.pool._pool.ThreadPool
        reveal_type(tp.map(square, ints))  # R: list[str]
        reveal_type(tp.apply_async(divide, (1, 2)))  # R: multiprocess.pool._results.ApplyResult[float]
