"""Functions that child processes run in the out-of-band connection tests."""

from __future__ import annotations

import os
import signal

from multiprocess import _conn_oob
from multiprocess.connection import Client


def echo(conn):
    """Say whether the connection sends out of band, then echo objects until None."""
    conn.send(conn._oob)
    while True:
        obj = conn.recv()
        if obj is None:  # (not iter(recv, None): arrays do not compare to None)
            break
        conn.send(obj)
    conn.close()


def client_echo(address, authkey):
    """Connect to ``address`` and echo (see :func:`echo`)."""
    echo(Client(address, authkey=authkey))


def die_when_fds_arrive(conn):
    """Receive a message, but be SIGKILLed once its memfds are here, before mapping them."""

    def kill(_fds):
        os.kill(os.getpid(), signal.SIGKILL)

    _conn_oob._fds_received_hook = kill
    conn.send("ready")
    conn.recv()
    os._exit(3)  # not reached


def wait_forever(conn, event):
    """Never read: the parent kills this child with a message in flight."""
    conn.send("ready")
    event.wait()  # never set
