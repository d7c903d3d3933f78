"""multiprocess.dummy.connection: the connection API between threads of one process.

Messages are Python objects passed through ``queue.Queue`` pairs: nothing is
serialized, so anything can be sent.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: typing_extensions is not a dependency
    from typing_extensions import Self


__all__ = ["Client", "Listener", "Pipe"]

families = [None]


class Connection:
    """One end of a pair of queues, with the API of ``multiprocess.connection.Connection``."""

    def __init__(self, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        self._in = inbox
        self._out = outbox
        self.send = self.send_bytes = outbox.put
        self.recv = self.recv_bytes = inbox.get

    def poll(self, timeout: float = 0.0) -> bool:
        """True when a message is waiting (waiting up to ``timeout`` seconds for one)."""
        if self._in.qsize() > 0:
            return True
        if timeout <= 0.0:
            return False
        with self._in.not_empty:
            self._in.not_empty.wait(timeout)
        return self._in.qsize() > 0

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listener:
    """Accepts connections from ``Client(listener.address)`` in other threads."""

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        self._backlog_queue: queue.Queue[tuple[Any, Any]] | None = queue.Queue(backlog)

    def accept(self) -> Connection:
        if self._backlog_queue is None:
            raise OSError("listener is closed")
        return Connection(*self._backlog_queue.get())

    def close(self) -> None:
        self._backlog_queue = None

    @property
    def address(self) -> Any:
        """What to pass to ``Client`` (the listener's backlog queue)."""
        return self._backlog_queue

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def Client(address: Any) -> Connection:
    """Connect to the ``Listener`` whose ``address`` is given."""
    inbox: queue.Queue[Any] = queue.Queue()
    outbox: queue.Queue[Any] = queue.Queue()
    address.put((outbox, inbox))
    return Connection(inbox, outbox)


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Return two connected ends (always duplex between threads)."""
    a: queue.Queue[Any] = queue.Queue()
    b: queue.Queue[Any] = queue.Queue()
    return Connection(a, b), Connection(b, a)
