"""``Pool`` and ``ProcessPoolExecutor`` on a Dask cluster (layer 5).

The same faces as :class:`multiprocess.pool.Pool` and
:class:`multiprocess.futures.ProcessPoolExecutor`, on another engine
(``_engine._DaskCoordinator``): Dask's ``distributed`` schedules the tasks on
its workers; calls, chunking, results, callbacks, ``progress=``, awaitable
results and errors that name the item are the local pool's.  Moving from a
laptop to a cluster is one line::

    from multiprocess.dask import Pool          # instead of: from multiprocess import Pool

    with Pool(address="tcp://scheduler:8786") as pool:
        print(pool.map(lambda x: x * x, range(10)))

With neither ``address`` nor ``client``, the pool starts its own
``distributed.LocalCluster`` of worker processes bound to 127.0.0.1 and
closes it with the pool; with ``address``, it connects to a running
scheduler (and closes only its connection); with ``client``, it uses that
client and leaves it open.

Serialization is ours end to end: functions and arguments reach the workers
as bytes made by :mod:`multiprocess.reduction` and are loaded there by it
(lambdas, closures, ``__main__`` classes; the workers need this package
installed, not the caller's script).  Anyone who can reach a scheduler can
run code on its workers: keep it on loopback or a private network, or use
Dask's TLS.

Needs the ``dask`` extra (``pip install "multiprocess[dask]"``); importing
this module does not import ``distributed``, making a pool does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

from .. import futures as _futures
from ..pool import _pool
from ._cluster import SchedulerUnreachableError, _Cluster, connect
from ._engine import _DaskCoordinator

__all__ = ["Pool", "ProcessPoolExecutor", "SchedulerUnreachableError"]


def _require() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "multiprocess.dask needs Dask's distributed package, which is not installed: "
            'pip install "multiprocess[dask]"'
        ) from e


def _check_options(retries: Any, connect_timeout: Any) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if (
        isinstance(connect_timeout, bool)
        or not isinstance(connect_timeout, (int, float))
        or not 0 < connect_timeout < math.inf
    ):
        raise ValueError(
            f"connect_timeout must be a positive number of seconds, not {connect_timeout!r}"
        )


class Pool(_pool.Pool):
    """A ``multiprocess.pool.Pool`` whose tasks run on a Dask cluster.

    The whole Pool API (``apply``, ``map``, ``imap``, ``starmap`` and their
    ``_async`` forms, callbacks, ``chunksize``, ``progress=``, ``close``,
    ``join``, ``terminate``, the context manager, awaitable results).  A
    ``map`` is cut into chunks as the local pool cuts it (4 per worker
    thread by default), and each chunk is one Dask task.

    Args:
        processes: How many tasks run at once, for chunking: with neither
            ``address`` nor ``client``, the number of worker processes of the
            LocalCluster the pool starts (one thread each; None:
            ``os.cpu_count()``); else None means the cluster's worker threads.
        initializer: Called as ``initializer(*initargs)`` once on each Dask
            worker, before the first task of this pool that it runs.  If it
            raises, the pool is broken (``BrokenPoolError``).
        initargs: Arguments of ``initializer``.
        address: A running scheduler's address, such as ``"tcp://10.0.0.5:8786"``.
        client: A ``distributed.Client`` to use (left open by the pool).
        task_timeout: Seconds each item may run (a chunk of n items: n times
            that, from when it is handed to Dask).  Past it, the task fails
            with ``TaskTimeoutError`` and its Dask future is cancelled; Dask
            cannot stop a running thread, so the function runs on in its
            worker until it returns.
        retries: How many times a task whose worker died runs again
            (0: it fails at once with ``TerminatedWorkerError``).
        connect_timeout: Seconds to reach the scheduler at ``address``.
        dashboard: Serve the dashboard of the LocalCluster the pool starts
            (on a free port of 127.0.0.1).

    Raises:
        ImportError: ``distributed`` is not installed.
        SchedulerUnreachableError: no scheduler answered at ``address``.
        ValueError, TypeError: a bad argument.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        address: str | None = None,
        client: Any = None,
        task_timeout: float | None = None,
        retries: int = 0,
        connect_timeout: float = 10.0,
        dashboard: bool = False,
    ) -> None:
        self._pool: list[Any] = []
        self._state = _pool.INIT
        _check_options(retries, connect_timeout)
        if processes is not None:
            processes = _pool._as_int(processes, "processes", "or None")
            if processes < 1:
                raise ValueError(f"Number of processes must be at least 1, not {processes}")
        self._check_pool_timeout(task_timeout)
        _require()
        self._retries = retries
        self._cluster: _Cluster = connect(address, client, processes, connect_timeout, dashboard)
        try:
            super().__init__(
                processes if processes is not None else self._cluster.threads(),
                initializer,
                initargs,
                task_timeout=task_timeout,
            )
        except BaseException:
            self._cluster.close()
            raise

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the pool submits to."""
        return self._cluster.client

    def _make_coordinator(self) -> Any:
        return _DaskCoordinator(
            self._cluster,
            self._processes,
            self._initializer,
            self._initargs,
            True,
            self._cache,
            task_timeout=self._task_timeout,
            retries=self._retries,
        )


class ProcessPoolExecutor(_futures.ProcessPoolExecutor):
    """A ``multiprocess.futures.ProcessPoolExecutor`` whose calls run on a Dask cluster.

    The local executor's API (``submit``, ``schedule``, ``map(chunksize=,
    buffersize=, progress=)``, ``shutdown(cancel_futures=)``, real
    ``concurrent.futures.Future`` objects) on the same Dask engine as
    :class:`Pool`.  A call whose worker died fails with ``WorkerDiedError``.

    Args:
        max_workers: Calls run at once: with neither ``address`` nor
            ``client``, the worker processes of the LocalCluster it starts
            (None: ``os.cpu_count()``); else None means the cluster's threads.
        mp_context: A ``multiprocess`` context whose serializer is used
            (start methods do not apply to Dask's workers).
        initializer, initargs: Run once on each Dask worker before its
            first call of this executor; if it raises, the executor is broken.
        address, client, task_timeout, retries, connect_timeout, dashboard:
            As for :class:`Pool`.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        address: str | None = None,
        client: Any = None,
        task_timeout: float | None = None,
        retries: int = 0,
        connect_timeout: float = 10.0,
        dashboard: bool = False,
    ) -> None:
        self._shutdown_called = True  # until the base class is set up (its finalizer looks)
        _check_options(retries, connect_timeout)
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        _require()
        self._retries = retries
        self._cluster: _Cluster = connect(address, client, max_workers, connect_timeout, dashboard)
        try:
            super().__init__(
                max_workers if max_workers is not None else self._cluster.threads(),
                mp_context,
                initializer,
                initargs,
                task_timeout=task_timeout,
            )
        except BaseException:
            self._cluster.close()
            raise

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the executor submits to."""
        return self._cluster.client

    def _make_coordinator(
        self,
        initializer: Callable[..., Any] | None,
        initargs: Iterable[Any],
        memory_limit: int | None,
        max_memory_per_child: int | None,
    ) -> Any:
        return _DaskCoordinator(
            self._cluster,
            self._max_workers,
            initializer,
            initargs,
            True,
            self._cache,
            task_timeout=self._task_timeout,
            retries=self._retries,
        )

    def _starts_on_demand(self) -> bool:
        return False  # the cluster's workers are there already
