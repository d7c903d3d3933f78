"""A dead or slow peer costs the others nothing: manager locks held by a killed
client, stalled handshakes on a Listener and on a manager server.

Every behaviour test runs under fork, spawn and forkserver (the ``ctx`` fixture).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time

import _dead_peer_helpers as h
import pytest

from multiprocess.connection import AuthenticationError, Client, Listener

pytestmark = pytest.mark.timeout(120)


def completes(func, *args, timeout=60.0):
    """Run ``func(*args)`` in a thread; True if it returned (a hang fails the test, not the run)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(func(*args)), daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0] is not False


# -- manager locks held by a killed client -----------------------------------------


@pytest.mark.parametrize(
    "typeid, times",
    [("Lock", 1), ("RLock", 2), ("Semaphore", 1), ("BoundedSemaphore", 1), ("Condition", 1)],
)
def test_manager_lock_held_by_a_killed_client_is_released(ctx, typeid, times):
    with ctx.Manager() as manager:
        lock = getattr(manager, typeid)()
        holding = ctx.Event()
        holder = ctx.Process(target=h.hold_and_hang, args=(lock, holding, times), daemon=True)
        holder.start()
        assert holding.wait(60)
        assert lock.acquire(False) is False  # held by the other client
        holder.kill()
        holder.join(60)
        assert holder.exitcode == -signal.SIGKILL
        assert lock.acquire(True, 60), f"{typeid} of a killed client never released"
        lock.release()
        if typeid in ("Semaphore", "BoundedSemaphore"):
            # Released once, not more: the value is back to 1.
            assert lock.acquire(False) is True
            assert lock.acquire(False) is False
            lock.release()


@pytest.mark.parametrize("typeid", ["Lock", "Semaphore"])
def test_manager_lock_of_a_client_that_exits_normally_stays_held(ctx, typeid):
    # As in the standard library (its suite checks it): only a client that
    # dies without exiting normally has its locks released.
    with ctx.Manager() as manager:
        lock = getattr(manager, typeid)()
        p = ctx.Process(target=h.acquire_and_exit, args=(lock,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert lock.acquire(False) is False
        lock.release()
        assert lock.acquire(False) is True
        lock.release()


def test_manager_semaphore_used_as_a_signal_is_not_released_on_exit(ctx):
    # Producers release, a consumer acquires and exits: the consumer held
    # nothing, and its exit must not add to the count.
    with ctx.Manager() as manager:
        sem = manager.Semaphore(0)
        done = ctx.Queue()
        consumer = ctx.Process(target=h.acquire_times, args=(sem, 3, done))
        producer = ctx.Process(target=h.release_times, args=(sem, 3))
        consumer.start()
        producer.start()
        assert done.get(timeout=60) == 3
        for p in (producer, consumer):
            p.join(60)
            assert p.exitcode == 0
        assert sem.acquire(False) is False
        sem.release()
        assert sem.acquire(False) is True


def test_manager_condition_notify_passes_over_a_killed_waiter(ctx):
    with ctx.Manager() as manager:
        cond = manager.Condition()
        results = ctx.Queue()
        waiters = []
        for timeout in (None, 60):  # the victim first: it would get the wake-up
            waiting = ctx.Event()
            p = ctx.Process(target=h.cond_wait_and_report, args=(cond, waiting, results, timeout))
            p.daemon = True
            p.start()
            assert waiting.wait(60)
            with cond:  # the child set `waiting` holding the lock: now it waits
                pass
            waiters.append(p)
        victim, live = waiters
        victim.kill()
        victim.join(60)
        with cond:
            cond.notify()
        assert results.get(timeout=90) is True, "the live waiter was not woken"
        live.join(60)
        assert live.exitcode == 0
        # The victim's lock was released: the condition is usable.
        assert cond.acquire(True, 60)
        cond.release()


# -- slow or hostile peers during the handshake -------------------------------------

DEADLINE = 0.3  # seconds: short, so that the tests are quick


def wait_until(predicate, what, timeout=30.0):
    """Poll ``predicate`` (an observable state, not a delay) until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for {what}")
        time.sleep(0.01)


def raw_peer(address):
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    peer = socket.socket(family)
    peer.connect(address)
    return peer


def in_thread(func, *args):
    """Start ``func(*args)`` in a thread; return it and a dict that gets 'value' or 'error'."""
    out = {}

    def run():
        try:
            out["value"] = func(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def accept_with_limit(listener):
    """listener.accept() in a thread: the error it raised (a hang fails the test)."""
    thread, out = in_thread(listener.accept)
    thread.join(30)
    assert not thread.is_alive(), "Listener.accept() is still held up by a stalled peer"
    if "value" in out:
        out["value"].close()
        return None
    return out["error"]


def check_a_good_client_connects(listener):
    client_thread, client = in_thread(Client, listener.address, None, b"key")
    conn = listener.accept()
    client_thread.join(30)
    with conn, client["value"] as good:
        good.send("still serving")
        assert conn.recv() == "still serving"


PEERS = {
    # name: (bytes sent after connecting, expected error of accept())
    "silent": (b"", AuthenticationError),
    "partial-header": (b"\x00\x00", AuthenticationError),
    "partial-payload": (struct.pack("!i", 50) + b"{sha256}", AuthenticationError),
    "garbage": (struct.pack("!i", 12) + b"garbage\x00\xff\x01\x02\x03", AuthenticationError),
    "oversize-length": (struct.pack("!i", 0x7FFFFFFF) + b"x" * 64, OSError),
    "long-length": (struct.pack("!iQ", -1, 2**40), OSError),
}


@pytest.mark.parametrize("family", ["AF_UNIX", "AF_INET"])
@pytest.mark.parametrize("kind", list(PEERS))
def test_listener_drops_a_slow_or_hostile_peer_and_keeps_serving(family, kind):
    sent, expected = PEERS[kind]
    with Listener(family=family, authkey=b"key", handshake_timeout=DEADLINE) as listener:
        with raw_peer(listener.address) as peer:
            if sent:
                peer.sendall(sent)
            # A good client arrives meanwhile and waits behind the bad one.
            client_thread, client = in_thread(Client, listener.address, None, b"key")
            error = accept_with_limit(listener)
            assert isinstance(error, expected), error
            if expected is AuthenticationError and kind != "garbage":
                assert "did not answer within" in str(error)
            conn = listener.accept()
            client_thread.join(30)
            with conn, client["value"] as good:
                good.send("served")
                assert conn.recv() == "served"
        check_a_good_client_connects(listener)


def test_listener_refuses_a_wrong_authkey_and_keeps_serving():
    with Listener(authkey=b"key", handshake_timeout=DEADLINE) as listener:
        client_thread, client = in_thread(Client, listener.address, None, b"wrong")
        assert isinstance(accept_with_limit(listener), AuthenticationError)
        client_thread.join(30)
        assert isinstance(client["error"], AuthenticationError)
        check_a_good_client_connects(listener)


def test_listener_handshake_deadline_is_for_the_whole_handshake():
    # A peer that sends a byte now and then (and never the whole answer)
    # never lets a per-read timeout expire; the deadline of the whole
    # handshake still does.
    with Listener(authkey=b"key", handshake_timeout=DEADLINE) as listener:
        with raw_peer(listener.address) as peer:
            stop = threading.Event()

            def trickle():
                for byte in struct.pack("!i", 250) + b"x" * 200:
                    if stop.wait(DEADLINE / 10):
                        return
                    try:
                        peer.send(bytes([byte]))
                    except OSError:
                        return

            trickler = threading.Thread(target=trickle, daemon=True)
            trickler.start()
            try:
                error = accept_with_limit(listener)
            finally:
                stop.set()
                trickler.join(30)
            assert isinstance(error, AuthenticationError)
        check_a_good_client_connects(listener)


def test_listener_handshake_timeout_must_be_positive():
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="handshake_timeout must be a positive number"):
            Listener(authkey=b"key", handshake_timeout=bad)


def _count(pid, what):
    return len(os.listdir(f"/proc/{pid}/{what}"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
def test_manager_closes_stalled_handshakes_and_serves_meanwhile(ctx):
    cap = h.QuickServer.max_unauthenticated
    manager = h.QuickManager(ctx=ctx)
    manager.start()
    try:
        pid = manager._process.pid
        shared = manager.list([1])
        threads0, fds0 = _count(pid, "task"), _count(pid, "fd")
        peers = []
        try:
            for _ in range(3 * cap):
                peers.append(raw_peer(manager.address))
                peers[-1].sendall(b"\x00\x00")  # two bytes of a header, then nothing
            # Meanwhile, a legitimate client: its connected proxies work, and a
            # new connection (one request), queued behind every stalled one, is served.
            shared.append(2)
            assert manager._number_of_objects() == 1
            worst = [0, 0]

            def settled():
                threads, fds = _count(pid, "task") - threads0, _count(pid, "fd") - fds0
                worst[0], worst[1] = max(worst[0], threads), max(worst[1], fds)
                return threads <= 0 and fds <= 0

            wait_until(settled, "the server to close every stalled connection")
            # Never more than `cap` handshakes at once, far fewer than the stalled
            # peers (slack for threads that gave their slot back and are ending).
            assert worst[0] <= 2 * cap, worst
            assert worst[1] <= 2 * cap, worst
        finally:
            for peer in peers:
                peer.close()
        shared.append(3)
        assert list(shared) == [1, 2, 3]
        assert manager._number_of_objects() == 1
    finally:
        manager.shutdown()
