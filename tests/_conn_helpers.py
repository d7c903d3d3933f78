"""Functions that child processes run in the connection tests (importable under spawn)."""

from __future__ import annotations

import os

from multiprocess import connection
from multiprocess.connection import AuthenticationError, Client

SENTINEL = b""


def echo_bytes(conn):
    """Send back every message as bytes until an empty one."""
    for msg in iter(conn.recv_bytes, SENTINEL):
        conn.send_bytes(msg)
    conn.close()


def echo_objects(conn):
    """Send back every object until None."""
    for obj in iter(conn.recv, None):
        conn.send(obj)
    conn.close()


def call_and_reply(conn):
    """Receive (function, args) pairs and send back function(*args), until None."""
    for func, args in iter(conn.recv, None):
        conn.send(func(*args))
    conn.close()


def send_sequence(conn, items):
    """Send each item, then close."""
    for item in items:
        conn.send(item)
    conn.close()


def send_bytes_after_go(go, conn, payload):
    """Wait for a message on ``go``, then send ``payload`` on ``conn``."""
    go.recv()
    conn.send_bytes(payload)


def client_send(address, authkey, message, report=None):
    """Connect to ``address`` and send ``message``; report the outcome on ``report``."""
    try:
        with Client(address, authkey=authkey) as c:
            c.send(message)
            reply = c.recv()
    except AuthenticationError as e:
        outcome = ("AuthenticationError", str(e))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which asserts on it
        outcome = (type(e).__name__, str(e))
    else:
        outcome = ("ok", reply)
    if report is not None:
        report.send(outcome)
        report.close()


def use_received_connections(conn):
    """Receive connections over ``conn`` (pickled through the resource sharer) and use them.

    Protocol: receives a write end and sends "hello via <pid>" on it; receives a
    read end and sends back over ``conn`` what it reads; receives a duplex end
    and echoes one object on it.
    """
    w = conn.recv()
    w.send(f"hello via {os.getpid()}")
    w.close()
    r = conn.recv()
    conn.send(("read", r.recv(), r.readable, r.writable))
    r.close()
    d = conn.recv()
    d.send(d.recv())
    d.close()
    conn.close()


def use_inherited_connection(conn, message):
    """Send ``message`` on a connection that came with the Process arguments."""
    conn.send(message)
    conn.close()


def listener_in_child(family, authkey, report):
    """Listen in the child, report the address, accept one client and echo one object."""
    with connection.Listener(family=family, authkey=authkey) as listener:
        report.send(listener.address)
        with listener.accept() as c:
            c.send(c.recv())
    report.close()


def write_chunks_then_exit(conn, chunks):
    """Send raw bytes (possibly broken frames) on the connection's fd, then exit."""
    for chunk in chunks:
        os.write(conn.fileno(), chunk)
    conn.close()


def make_closure(k):
    def add(x):
        return x + k

    return add
