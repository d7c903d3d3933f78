"""Sharing file descriptors with processes that are already running (layer 4).

A child started with spawn or forkserver receives descriptors with its start-up
data, and a forked child inherits them.  A process that is already running can
only get a descriptor from its owner over an AF_UNIX socket (SCM_RIGHTS).  That
is what a pickled Connection or socket carries: a :class:`DupFd`, a ticket for
a duplicate of the descriptor, held by this process's resource sharer::

    owner process                                  receiving process
    DupFd(fd): dup(fd) -> sharer cache[key]
    pickle: (sharer address, key) --- any channel --->  DupFd.detach():
                                                          Client(address, authkey)
    sharer thread: accept, check authkey  <-----------    request (key, pid)
                   send_handle(dup) ------------------>   recv_handle() -> fd
                   close(dup)

The sharer is one background thread with a Listener, started the first time a
descriptor is registered.  Clients must pass the HMAC challenge with the
process tree's authkey (``current_process().authkey``), and requests are a
fixed-size binary record: the sharer never unpickles anything.  A forked child
drops the parent's sharer state (its registered descriptors belong to the
parent) and starts its own on demand.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
from typing import Any, Callable

from . import process, reduction, util
from ._errors import AuthenticationError

__all__ = ["DupFd", "stop"]

# A request: the key of the resource and the pid of the process that wants it.
# An empty message asks the serving thread to stop.
_REQUEST = struct.Struct("!QQ")

# More than one process may be fetching descriptors at once: macOS refuses
# connections beyond the listen backlog instead of queuing them.
_BACKLOG = 32

_SendFn = Callable[[Any, int], None]
_CloseFn = Callable[[], None]


class DupFd:
    """A picklable ticket for a duplicate of a file descriptor.

    The duplicate is made now and kept by this process's resource sharer until
    a process calls :meth:`detach` (or the sharer is stopped).
    """

    def __init__(self, fd: int) -> None:
        new_fd = os.dup(fd)

        def send(conn: Any, pid: int) -> None:
            reduction.send_handle(conn, new_fd, pid)

        def close() -> None:
            os.close(new_fd)

        try:
            self._id = _resource_sharer.register(send, close)
        except BaseException:
            os.close(new_fd)
            raise

    def detach(self) -> int:
        """Fetch the descriptor from its owner and return it (call at most once)."""
        with _resource_sharer.get_connection(self._id) as conn:
            return reduction.recv_handle(conn)


class _SharerServer:
    """One listener, its serving thread and the resources waiting to be fetched."""

    def __init__(self, authkey: bytes) -> None:
        from .connection import Listener

        self._authkey = authkey
        self.listener = Listener(family="AF_UNIX", backlog=_BACKLOG, authkey=authkey)
        self.address = self.listener.address
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[_SendFn, _CloseFn]] = {}
        self._next_key = 1
        self.thread = threading.Thread(
            target=self._serve, name="multiprocess-resource-sharer", daemon=True
        )
        self.thread.start()

    def add(self, send: _SendFn, close: _CloseFn) -> int:
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._cache[key] = (send, close)
        return key

    def _take(self, key: int) -> tuple[_SendFn, _CloseFn] | None:
        with self._lock:
            return self._cache.pop(key, None)

    def close_resources(self) -> None:
        with self._lock:
            entries = list(self._cache.values())
            self._cache.clear()
        for _send, close in entries:
            try:
                close()
            except OSError:
                pass

    def _serve(self) -> None:
        # Signals are for the main thread.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            try:
                with self.listener.accept() as conn:
                    request = conn.recv_bytes(_REQUEST.size)
                    if not request:
                        return
                    key, pid = _REQUEST.unpack(request)
                    entry = self._take(key)
                    if entry is None:
                        # Closing the connection tells the client (EOFError).
                        util.info("resource sharer: no resource with key %d", key)
                        continue
                    send, close = entry
                    try:
                        send(conn, pid)
                    finally:
                        close()
            except (AuthenticationError, EOFError, OSError, struct.error) as e:
                if self.listener._listener is None:
                    return  # stopped
                # A client that failed the challenge, broke the protocol or
                # went away: the others are still served.
                util.info("resource sharer: dropped a client: %r", e)
            except Exception:  # noqa: BLE001 - the thread must survive; report and go on
                if util.is_exiting():
                    return
                sys.excepthook(*sys.exc_info())

    def stop(self, timeout: float | None) -> None:
        from .connection import Client

        try:
            with Client(self.address, authkey=self._authkey) as conn:
                conn.send_bytes(b"")
        except (OSError, EOFError, AuthenticationError) as e:
            util.sub_warning("resource sharer: could not ask the thread to stop: %r", e)
        self.thread.join(timeout)
        if self.thread.is_alive():
            util.sub_warning("_ResourceSharer thread did not stop when asked")
        self.listener.close()
        self.close_resources()

    def discard_in_child(self) -> None:
        """In a forked child: close our copies of the parent's sharer state."""
        # The Listener's socket-file finalizer belongs to the parent's pid and
        # is skipped here, so the parent's socket file stays.
        self.listener.close()
        self.close_resources()


class _ResourceSharer:
    """This process's resource sharer; its server starts on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: _SharerServer | None = None
        util.register_after_fork(self, _ResourceSharer._afterfork)

    def register(self, send: _SendFn, close: _CloseFn) -> tuple[Any, int]:
        """Hold a resource until a process asks for it; return its identifier.

        ``send(conn, pid)`` transfers the resource over an authenticated
        connection; ``close()`` releases this process's copy afterwards (or at
        stop).
        """
        with self._lock:
            if self._server is None:
                util.debug("starting listener and thread for sending handles")
                self._server = _SharerServer(process.current_process().authkey)
            server = self._server
            return (server.address, server.add(send, close))

    @staticmethod
    def get_connection(ident: tuple[Any, int]) -> Any:
        """Connect to the sharer that holds ``ident`` and ask for the resource."""
        from .connection import Client

        address, key = ident
        conn = Client(address, authkey=process.current_process().authkey)
        try:
            conn.send_bytes(_REQUEST.pack(key, os.getpid()))
        except BaseException:
            conn.close()
            raise
        return conn

    def stop(self, timeout: float | None = None) -> None:
        """Stop the serving thread and release the resources nobody fetched."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop(timeout)

    def _afterfork(self) -> None:
        self._lock = threading.Lock()
        server, self._server = self._server, None
        if server is not None:
            server.discard_in_child()


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
