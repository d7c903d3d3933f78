"""Pools of workers: ``Pool`` (processes) and ``ThreadPool`` (threads) (layer 5).

The API is the standard library's; what differs is underneath.  A process
``Pool`` is run by one coordinator object, ``_Coordinator``, that owns the
worker processes and knows which worker holds which task::

  caller threads      feeder thread (_feed)         coordinator thread (_run)       worker processes
  --------------      ---------------------         -------------------------       ----------------
  map(), imap(),  _Job  draw tasks lazily; pickle   give each task to a worker  frame  worker(): read
  apply_async() -----> the function once per call ---> with room; poll result ------> a task, call it,
       |               and the arguments per task  ready  pipes, sentinels and  <------ send the result
       |                                           tasks  a wake-up pipe        result  (one pipe each way
       v                                                  together                       per worker)
  AsyncResult.get() <---------- result._set(index, (ok, value)) ---+
                                                                   |
       a sentinel fires: fail the task the dead worker had read (TerminatedWorkerError with its
       pid and exit code or signal), hand its other tasks to other workers, start a replacement

Faults never hang the caller.  A worker that dies fails exactly the task it was
running (inside a chunk, the item it was running: see ``_record``); results that cannot be pickled in the worker (:class:`MaybeEncodingError`)
or unpickled in the parent (:class:`ResultUnpicklingError`) fail their task; an
initializer that raises, or workers that keep dying while they start, break the
pool (:class:`BrokenPoolError` for every pending and future task) instead of
respawning forever; ``terminate()`` kills the workers (SIGTERM, then SIGKILL)
and fails whatever was pending (:class:`PoolTerminatedError`).

Serialization goes through :mod:`multiprocess.reduction` with the context's
serializer, looked up at each call.  The function of a call is pickled once
per call (or not at all, see ``_PickledFunctions``) and sent once to each
worker that runs one of its tasks; workers keep the last few functions by key.
Large data (arguments, the function, results: buffers or pickles of 1 MiB
or more) crosses in memfds that the receiver maps, and a call's function in
one memfd that every worker maps (see ``_oob``).  Results come back in the order the tasks were sent, which is how the
coordinator knows which task a worker was running when it died; and since it
keeps the worker's end of the task pipe, it can tell whether the dead worker
had read that task at all (if not, another worker gets it).

``ThreadPool`` has the same API on threads (``_ThreadCoordinator``): the
worker threads draw tasks themselves and nothing is pickled.

In a coroutine, the results of ``apply_async``, ``map_async`` and
``starmap_async`` are awaitable, and the iterators of ``imap`` and
``imap_unordered`` work with ``async for``, without blocking the event loop.
Cancelling the awaiting task cancels the call: the result fails with
``concurrent.futures.CancelledError``, and its tasks that no worker has been
given yet never run (see ``ApplyResult.__await__``).

The modules of this package, each one concern, lowest first (each imports
only those above it in this list)::

  _exceptions   the exceptions of tasks and pools, and their messages
  _wire         the frames between the pool and its workers, readers and writers
  _oob          large data out of band: memfds on a side channel per worker (Linux)
  _notes        the note that names the item an exception was raised for
  _record       each worker's record in shared memory: which item it runs, since when
  _worker       the loop a worker process runs (``worker``, ``mapstar``)
  _aio          awaiting from asyncio: a loop's future, woken from a pool thread
  _progress     progress= of the maps: counts items, updates a bar or a callable
  _results      ApplyResult/AsyncResult, MapResult, the imap iterators
  _functions    the pickled functions of the calls in flight, reused
  _jobs         a call (``_Job``) and its pickled tasks (``_Task``)
  _limits       task_timeout and memory sizes as given, a worker's resident memory
  _engine       what every engine shares: taking calls, the feeder loop, refusing
                calls, breaking and failing them, closing
  _dispatch     the engine's traffic with its workers: start, send tasks, read results, exits
  _task_control the engine's task control: timeouts, memory limits, deaths inside chunks
  _coordinator  the engine of a process pool (_Coordinator: the two parts above, its
                threads, failures and shutdown)
  _threads      the engine of a thread pool
  _pool         the faces: Pool and ThreadPool

Compatibility: ``_pool`` (the live worker Process objects), ``_state``,
``_cache``, ``_ctx``, ``_processes`` and ``_repopulate_pool()`` keep the meaning
they have in the standard library; real clients and its test suite use them.
Every public name is defined in a module of this package and reported as
``multiprocess.pool.NAME`` (its ``__module__``), as before the package was
split: tracebacks print it, and pickles (``worker`` under spawn, exceptions
sent back by workers) refer to it.
"""

from __future__ import annotations

from .._errors import TaskTimeoutError as TaskTimeoutError
from .._errors import TimeoutError as TimeoutError
from .._forklock import FORK_LOCK as _FORK_LOCK
from ._exceptions import BrokenPoolError as BrokenPoolError
from ._exceptions import ExceptionWithTraceback as ExceptionWithTraceback
from ._exceptions import MaybeEncodingError as MaybeEncodingError
from ._exceptions import MemoryLimitError as MemoryLimitError
from ._exceptions import PoolTerminatedError as PoolTerminatedError
from ._exceptions import RemoteTraceback as RemoteTraceback
from ._exceptions import ResultUnpicklingError as ResultUnpicklingError
from ._exceptions import TerminatedWorkerError as TerminatedWorkerError
from ._exceptions import rebuild_exc as rebuild_exc
from ._worker import mapstar as mapstar
from ._worker import starmapstar as starmapstar
from ._worker import worker as worker

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any

    from ._pool import CLOSE as CLOSE
    from ._pool import INIT as INIT
    from ._pool import RUN as RUN
    from ._pool import TERMINATE as TERMINATE
    from ._pool import Pool as Pool
    from ._pool import ThreadPool as ThreadPool
    from ._results import ApplyResult as ApplyResult
    from ._results import AsyncResult as AsyncResult
    from ._results import IMapIterator as IMapIterator
    from ._results import IMapUnorderedIterator as IMapUnorderedIterator
    from ._results import MapResult as MapResult
    from ._results import ResultIterator as ResultIterator

__all__ = ["Pool", "ThreadPool"]

# The faces and the engine are imported on first use, not with the package: a
# worker process imports this package (it finds ``worker`` here) and needs only
# the worker's loop and the exceptions, which a spawned worker's start-up pays.
_LAZY = {
    "CLOSE": "_pool",
    "INIT": "_pool",
    "RUN": "_pool",
    "TERMINATE": "_pool",
    "Pool": "_pool",
    "ThreadPool": "_pool",
    "ApplyResult": "_results",
    "AsyncResult": "_results",
    "IMapIterator": "_results",
    "IMapUnorderedIterator": "_results",
    "MapResult": "_results",
    "ResultIterator": "_results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _FORK_LOCK:  # any thread may be the first (see _forklock)
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
