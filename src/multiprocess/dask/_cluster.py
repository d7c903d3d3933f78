"""The Dask client a pool uses, and the ``LocalCluster`` it owns if it started one (layer 5)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any


class SchedulerUnreachableError(ConnectionError):
    """No Dask scheduler answered at the address given, within ``connect_timeout``."""


class _Cluster:
    """A Dask client, and whether closing the pool closes it (and its cluster)."""

    def __init__(self, client: Any, cluster: Any = None, owned: bool = False) -> None:
        self.client = client
        self.cluster = cluster  # the LocalCluster we started, or None
        self.owned = owned  # we made the client: close it (and the cluster) with the pool
        self.closed = False

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def threads(self) -> int:
        """The worker threads the cluster has now (at least 1: tasks wait for workers)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - only a sizing hint
            return 1

    def close(self) -> None:
        if self.closed or not self.owned:
            self.closed = True
            return
        self.closed = True
        try:
            self.client.close(timeout=10)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=10)


def connect(
    address: str | None,
    client: Any,
    n_workers: int | None,
    connect_timeout: float,
    dashboard: bool,
) -> _Cluster:
    """Use ``client``, connect to ``address``, or start a LocalCluster on 127.0.0.1."""
    import distributed

    if client is not None:
        if address is not None:
            raise ValueError("give either address= or client=, not both")
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, not {type(client).__name__}")
        return _Cluster(client)
    if address is not None:
        if not isinstance(address, str):
            raise TypeError(f"address must be a str such as 'tcp://10.0.0.5:8786', not {address!r}")
        try:
            made = distributed.Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            raise SchedulerUnreachableError(
                f"could not reach a Dask scheduler at {address} within {connect_timeout:g} s "
                f"({type(e).__name__}: {e}). Start one there (`dask scheduler`, then "
                f"`dask worker {address}` on each machine), check the address and that "
                f"the network lets you reach it, or raise connect_timeout."
            ) from e
        return _Cluster(made, owned=True)
    # Our own cluster: worker processes (so that a task that crashes takes only
    # its worker down, and nannies restart them), one thread each, on loopback
    # only (anyone who can reach a scheduler can run code on its workers).
    # allowed_failures=0: a task whose worker died fails at once, with our
    # error; the pool's retries= decides whether it runs again.
    # worker-saturation 1.0: the scheduler gives a worker thread one queued
    # task at a time (Dask's default gives it a little more), so that a worker
    # that dies fails the task it was running, not also one waiting behind it.
    import dask

    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = _local_cluster(n_workers, dashboard)
    try:
        made = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return _Cluster(made, cluster, owned=True)


def _local_cluster(n_workers: int | None, dashboard: bool) -> Any:
    import distributed

    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        # A free port on 127.0.0.1: the scheduler serves its health and metrics
        # routes there even without the dashboard (on 8787 by default).
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        scheduler_kwargs={"allowed_failures": 0, "dashboard": dashboard},
    )
