"""The fork server: a clean process that forks the children of the forkserver method.

Forking the program itself copies everything it holds (threads' locks, open
files, big heaps); spawning a fresh interpreter per child is slow.  The fork
server is the middle way: a fresh interpreter, started on first use, that
imports the program's main module and the modules named by
``set_forkserver_preload`` once, and then forks one child per request.  It sits
in layer 3 with the other launchers; ``popen_forkserver`` is its client::

      parent (popen_forkserver)               fork server (main)
      --------------------------               ------------------
      connect(AF_UNIX) --------------------->  accept
      <-- nonce / HMAC answers, both ways -->  (shared random authkey)
      send_fds([status_w, data_r, alive_w,
                tracker_fd, *child_fds]) ---->  fork() --> child: reads data_r
      data_w: prep data + Process pickle ----------------------^  spawn.prepare,
      status_r <-- pid (signed 8 bytes) ----   reports pid        _bootstrap
      status_r <-- exit code --------------    SIGCHLD: reaps, reports the code

* Authentication: the server only forks a child (which unpickles what the
  client sends it) for a peer that proved, with an HMAC over a fresh nonce,
  that it knows the server's authkey; the client checks the server the same
  way before sending anything.  The key is random per server and reaches it
  through a pipe, never the command line.
* Lifetime: every client holds the write end of the *alive* pipe (the starting
  process, its forked children, and the server's children, which are passed
  it).  When the last one is gone the server sees EOF and exits.  It ignores
  SIGINT, so that a ^C aimed at the program leaves it to report the children's
  exit codes.  If it dies anyway, the next ``ensure_running`` starts another.
* Exit codes: the server writes the child's pid and, once it has reaped it,
  its exit code (a negative signal number if killed) on the status pipe, which
  is the child's sentinel.  The child keeps a copy of the status pipe open too,
  so that if the server dies the sentinel still becomes ready only when the
  child exits (and then reads as exit code 255: unknown).

Compatibility hooks: CPython's test suite reaches ``_forkserver._forkserver_pid``
and ``_forkserver.ensure_running``; ``_forkserver_address`` and
``_forkserver_alive_fd`` keep their standard-library names.
"""

from __future__ import annotations

import atexit
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    import subprocess
    from typing import Any

from . import process, resource_tracker, spawn, util
from ._errors import AuthenticationError

try:  # the built-in SHA-256 (see _mac)
    from _sha2 import sha256 as _sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # Python 3.9 to 3.11
    except ImportError:  # a build without it: OpenSSL's
        from hashlib import sha256 as _sha256
from _operator import _compare_digest as compare_digest

__all__ = [
    "connect_to_new_process",
    "ensure_running",
    "get_inherited_fds",
    "set_forkserver_preload",
]

MAXFDS_TO_SEND = 256
SIGNED_STRUCT = struct.Struct("q")  # large enough for a pid_t and an exit code

_AUTHKEY_SIZE = 32
_NONCE_SIZE = 32
_MAC_SIZE = 32
_REQUEST = b"FORK"
# The server answers one connection at a time: a peer that connects and then
# says nothing must not stop it from serving the others forever.
_HANDSHAKE_TIMEOUT = 20.0
# How long a server that refused a connection may take to finish dying.
_DYING_SERVER_TIMEOUT = 5.0
# Preparation data the server applies before preloading (see spawn.prepare).
# sys_argv: a main module that parses its arguments at import (argparse) sees
# the program's, as in the parent and in spawned children.
_SERVER_PREP_KEYS = (
    "sys_path",
    "sys_argv",
    "multiprocessing_alias",
    "init_main_from_path",
    "init_main_from_name",
)
# The alias (python -m multiprocess.run) before the main module that imports it.
_MAIN_PREP_KEYS = ("multiprocessing_alias", "init_main_from_path", "init_main_from_name")


class ForkServer:
    """The client side of one fork server (the package has one: ``_forkserver``).

    In the process that started the server, ``_proc`` is its ``subprocess.Popen``;
    elsewhere (forked children, the server's own children) the server is reused
    through the inherited ``_forkserver_address``, ``_forkserver_authkey`` and
    ``_forkserver_alive_fd``.
    """

    def __init__(self) -> None:
        # A str, or bytes for a Linux abstract socket (as getsockname returns it).
        self._forkserver_address: Any = None
        self._forkserver_alive_fd: int | None = None
        self._forkserver_pid: int | None = None
        self._forkserver_authkey: bytes | None = None
        self._inherited_fds: list[int] | None = None
        self._preload_modules: list[str] = ["__main__"]
        # Set when a server that preloaded the main module exited by itself
        # (os._exit at import, say): the servers started after it do not
        # preload it, each child imports it (as under spawn).
        self._skip_main_preload = False
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        util.helper_processes.add(self)

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have held the lock when it forked.
        self._lock = threading.Lock()
        # The server is the parent's child: only the parent can reap it.
        util.drop_helper_popen(self)

    def set_forkserver_preload(self, modules_names: Sequence[str]) -> None:
        """Set the modules the server imports when it starts (children inherit them).

        Takes effect the next time a server is started.  ``'__main__'`` stands
        for the program's main module.  Modules that fail to import are skipped.
        """
        if not all(type(mod) is str for mod in modules_names):
            raise TypeError("module_names must be a list of strings")
        self._preload_modules = list(modules_names)
        self._skip_main_preload = False

    def get_inherited_fds(self) -> list[int] | None:
        """Return the fds passed to this process by its parent, or None.

        None unless this process is a child started by a fork server.
        """
        return self._inherited_fds

    def connect_to_new_process(self, fds: Sequence[int]) -> tuple[int, int]:
        """Ask the server for a new child that receives ``fds``.

        Returns ``(status_r, data_w)``: the caller writes the pickled
        preparation data and Process object to ``data_w``, then reads the
        child's pid and, eventually, its exit code from ``status_r``.
        """
        if len(fds) + 4 >= MAXFDS_TO_SEND:
            raise ValueError(f"too many fds to pass to a child ({len(fds)})")
        attempts = 3
        for attempt in range(1, attempts + 1):
            self.ensure_running()
            with self._lock:
                address = self._forkserver_address
                authkey = self._forkserver_authkey
                if address is None or authkey is None or self._forkserver_alive_fd is None:
                    continue  # stopped by another thread meanwhile
                # A copy: another thread may close ours if the server dies.
                alive_fd = os.dup(self._forkserver_alive_fd)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                try:
                    client.connect(address)
                    _authenticate_server(client, authkey)
                except (ConnectionRefusedError, ConnectionResetError, FileNotFoundError):
                    # The server died since ensure_running() looked: nothing was
                    # sent yet, so start another one and ask again.
                    if attempt == attempts:
                        raise
                    self._forget_server(address)
                    continue
                return self._send_request(client, alive_fd, fds)
            finally:
                client.close()
                os.close(alive_fd)
        raise RuntimeError("cannot reach the fork server: it was stopped while connecting")

    def _send_request(
        self, client: socket.socket, alive_fd: int, fds: Sequence[int]
    ) -> tuple[int, int]:
        status_r, status_w = os.pipe()
        data_r, data_w = os.pipe()
        try:
            allfds = [status_w, data_r, alive_fd, resource_tracker.getfd(), *fds]
            socket.send_fds(client, [_REQUEST], allfds)
        except BaseException:
            os.close(status_r)
            os.close(data_w)
            raise
        finally:
            os.close(status_w)
            os.close(data_r)
        return status_r, data_w

    def ensure_running(self) -> None:
        """Start the fork server unless it is running; restart it if it died.

        Can be called from any process; children normally reuse the server of
        the process that started them.
        """
        with self._lock:
            resource_tracker.ensure_running()
            if self._forkserver_pid is not None:
                if self._server_alive():
                    return
                self._forget_server_unlocked()
            self._launch()

    def _server_alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        # Not our child: a signal 0 tells whether it exists (a server that
        # exists but no longer listens is caught by connect_to_new_process).
        assert self._forkserver_pid is not None
        try:
            os.kill(self._forkserver_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def _forget_server(self, address: Any) -> None:
        """Drop the server at ``address`` after a refused connection, unless it lives.

        A refused connection normally means that the server is dead or dying
        (its listening socket is closed).  A server of ours that still runs a
        moment later is kept (a full listen queue refuses connections on some
        systems): the caller simply asks again.
        """
        with self._lock:
            if self._forkserver_address != address:
                return  # another thread already replaced it
            if self._proc is not None:
                import subprocess  # loaded already: it made _proc (see util.spawnv_passfds)

                try:
                    self._proc.wait(_DYING_SERVER_TIMEOUT)
                except subprocess.TimeoutExpired:
                    return
            self._forget_server_unlocked()

    def _forget_server_unlocked(self) -> None:
        """Drop a server that died (or stopped answering), so that another starts."""
        alive_fd, self._forkserver_alive_fd = self._forkserver_alive_fd, None
        if alive_fd is not None:
            os.close(alive_fd)
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.wait()  # reap it (it is dead)
            _unlink_socket(self._forkserver_address)
            self._note_dead_server(proc.returncode)
        self._forkserver_address = None
        self._forkserver_authkey = None
        self._forkserver_pid = None

    def _note_dead_server(self, returncode: int) -> None:
        # A server exits by itself only when its preloading made it (it ignores
        # SIGINT, and sys.exit() there is caught): not preloading the main
        # module any more lets the next one live.  Killed servers change nothing.
        if returncode >= 0 and "__main__" in self._preload_modules and not self._skip_main_preload:
            self._skip_main_preload = True
            warnings.warn(
                f"forkserver: the fork server exited by itself (code {returncode}), "
                f"probably while it imported the main module (os._exit() at import?); "
                f"starting another that does not preload it: each child imports it",
                stacklevel=2,
            )

    def _launch(self) -> None:
        exe = spawn.get_executable()
        if exe is None:
            raise RuntimeError(
                "cannot start the fork server: sys.executable is empty; "
                "call multiprocess.set_executable()"
            )
        preload = [
            name
            for name in self._preload_modules
            if not (name == "__main__" and self._skip_main_preload)
        ]
        prep: dict[str, Any] = {}
        if preload:
            data = spawn.get_preparation_data("ignore")
            prep = {key: data[key] for key in _SERVER_PREP_KEYS if key in data}
        tracker_fd = resource_tracker.getfd()
        authkey = os.urandom(_AUTHKEY_SIZE)
        address = _new_address()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fds_to_close: list[int] = []
        try:
            # Bound and listening before the server starts: clients can connect
            # at once, their requests wait in the backlog.
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            fds_to_close.append(alive_r)
            try:
                key_r, key_w = os.pipe()
                fds_to_close.append(key_r)
                try:
                    os.write(key_w, authkey)  # 32 bytes: never blocks on a new pipe
                finally:
                    os.close(key_w)
                args = (listener.fileno(), alive_r, key_r, tracker_fd, preload)
                prog = (
                    f"from {__package__}.forkserver import main; "
                    f"main({', '.join(map(repr, args))}, **{prep!r})"
                )
                cmd = [exe, *spawn._interpreter_flags(), "-c", prog]
                passfds = [listener.fileno(), alive_r, key_r, tracker_fd]
                # Blocked now, ignored by the server before it unblocks it: a ^C
                # while it starts cannot kill it.
                old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    proc = util.spawnv_passfds(exe, cmd, passfds)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            except BaseException:
                os.close(alive_w)
                raise
        except BaseException:
            _unlink_socket(address)
            raise
        finally:
            listener.close()
            for fd in fds_to_close:
                os.close(fd)
        self._proc = proc
        self._forkserver_pid = proc.pid
        self._forkserver_address = address
        self._forkserver_authkey = authkey
        self._forkserver_alive_fd = alive_w

    def _stop(self, timeout: float | None = None) -> None:
        """Shut the server down and wait for it (for tests).

        The server exits once every client has closed the alive pipe, i.e. once
        the children it forked have exited too.  With ``timeout``, it is killed
        if it has not exited by then (children still running then report exit
        code 255).
        """
        with self._lock:
            if self._forkserver_pid is None:
                return
            alive_fd, self._forkserver_alive_fd = self._forkserver_alive_fd, None
            if alive_fd is not None:
                os.close(alive_fd)
            proc, self._proc = self._proc, None
            if proc is not None:
                import subprocess  # loaded already: it made proc (see util.spawnv_passfds)

                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                _unlink_socket(self._forkserver_address)
            self._forkserver_pid = None
            self._forkserver_address = None
            self._forkserver_authkey = None


def _new_address() -> str:
    name = f"pymp-forkserver-{os.getpid()}-{os.urandom(8).hex()}"
    if util.abstract_sockets_supported:
        return "\0" + name
    return os.path.join(util.get_temp_dir(), name)


def _unlink_socket(address: Any) -> None:
    if address and not util.is_abstract_socket_namespace(address):
        try:
            os.unlink(address)
        except OSError:
            pass


#
# Authentication: each side proves it knows the key with an HMAC of a nonce
# chosen by the other side.
#


# HMAC-SHA256 (RFC 2104) on the interpreter's built-in SHA-256: the hmac
# module loads OpenSSL's _hashlib, several milliseconds in the parent and in
# the server before it can fork the first worker.
_BLOCK_SIZE = 64
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


def _mac(authkey: bytes, role: bytes, nonce: bytes) -> bytes:
    """``hmac.new(authkey, role + nonce, "sha256").digest()``."""
    key = _sha256(authkey).digest() if len(authkey) > _BLOCK_SIZE else authkey
    key = key.ljust(_BLOCK_SIZE, b"\0")
    inner = _sha256(key.translate(_INNER_PAD) + role + nonce).digest()
    return _sha256(key.translate(_OUTER_PAD) + inner).digest()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _authenticate_server(sock: socket.socket, authkey: bytes) -> None:
    """Client side: answer the server's challenge, then check the server's answer."""
    server_nonce = _recv_exact_or_reset(sock, _NONCE_SIZE)
    client_nonce = os.urandom(_NONCE_SIZE)
    sock.sendall(_mac(authkey, b"client", server_nonce) + client_nonce)
    try:
        answer = _recv_exact(sock, _MAC_SIZE)
    except EOFError:
        raise AuthenticationError("the fork server rejected our authentication") from None
    if not compare_digest(answer, _mac(authkey, b"server", client_nonce)):
        raise AuthenticationError("the fork server failed to authenticate itself")


def _recv_exact_or_reset(sock: socket.socket, size: int) -> bytes:
    # EOF before the first byte: the server died after accepting (or before).
    try:
        return _recv_exact(sock, size)
    except EOFError:
        raise ConnectionResetError(
            errno.ECONNRESET, "the fork server closed the connection"
        ) from None


def _authenticate_client(sock: socket.socket, authkey: bytes) -> bool:
    """Server side: challenge the client, then answer its challenge."""
    server_nonce = os.urandom(_NONCE_SIZE)
    sock.sendall(server_nonce)
    reply = _recv_exact(sock, _MAC_SIZE + _NONCE_SIZE)
    if not compare_digest(reply[:_MAC_SIZE], _mac(authkey, b"client", server_nonce)):
        return False
    sock.sendall(_mac(authkey, b"server", reply[_MAC_SIZE:]))
    return True


#
# The server process
#


def main(
    listener_fd: int,
    alive_r: int,
    authkey_r: int,
    tracker_fd: int,
    preload: Sequence[str],
    **prep: Any,
) -> None:
    """Run the fork server (started by ``ForkServer._launch`` in a new interpreter)."""
    # The parent blocked SIGINT before starting us: ignore it, then unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    with open(authkey_r, "rb") as f:
        authkey = f.read()
    # What the server itself registers goes to the program's tracker.
    resource_tracker._resource_tracker._adopt_fd(tracker_fd)
    _preload(preload, prep)
    util._close_stdin()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=listener_fd)
    _forkserver._forkserver_address = listener.getsockname()
    _forkserver._forkserver_authkey = authkey
    _forkserver._forkserver_pid = os.getpid()
    with listener:
        _Server(listener, alive_r, authkey).serve_forever()


def _preload(preload: Sequence[str], prep: dict[str, Any]) -> None:
    """Import the modules the children should inherit; never let one stop the server.

    Whatever a module does at import (raise, ``sys.exit()`` as argparse does on
    bad arguments) is reported as a warning and the server goes on: its
    children import what failed again, and report the error where it belongs,
    in the child.  (``os._exit()`` cannot be caught: see ``ForkServer``.)
    """
    if "sys_path" in prep:
        sys.path = prep["sys_path"]
    if "sys_argv" in prep:
        sys.argv = prep["sys_argv"]
    current = process.current_process()
    for modname in preload:
        try:
            if modname == "__main__":
                main_data = {key: prep[key] for key in _MAIN_PREP_KEYS if key in prep}
                if not main_data:
                    continue
                current._inheriting = True  # type: ignore[attr-defined]
                try:
                    spawn.prepare(main_data)
                finally:
                    del current._inheriting  # type: ignore[attr-defined]
            else:
                __import__(modname)
        except ImportError:
            pass
        except RuntimeError as e:
            if e.args != (spawn.NOT_BOOTSTRAPPED_MESSAGE,):
                _warn_preload_failed(modname, e)
            # Otherwise an unguarded main module: each child says so itself.
        except (Exception, SystemExit, KeyboardInterrupt) as e:  # noqa: BLE001
            _warn_preload_failed(modname, e)
        finally:
            util._flush_std_streams()


def _warn_preload_failed(modname: str, error: BaseException) -> None:
    if isinstance(error, SystemExit):
        what = f"called sys.exit({error.code!r})"
    else:
        what = f"raised {error!r}"
    warnings.warn(
        f"forkserver: importing {modname!r} in the fork server {what}; the server "
        f"goes on without it, and each child imports it again",
        stacklevel=2,
    )


def _sigchld_handler(signum: int, frame: Any) -> None:
    # Nothing to do here: the wakeup fd wakes the main loop, which reaps.
    pass


class _Server:
    """The fork server's event loop: requests, SIGCHLD, and the alive pipe."""

    def __init__(self, listener: socket.socket, alive_r: int, authkey: bytes) -> None:
        self.listener = listener
        self.alive_r = alive_r
        self.authkey = authkey
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(self.sig_w, False)
        self.selector = selectors.DefaultSelector()
        # Child pid -> the status pipe on which its exit code is reported.
        self.status_fds: dict[int, int] = {}
        self.old_handlers: dict[int, Any] = {}

    def serve_forever(self) -> None:
        self.old_handlers = {
            signal.SIGCHLD: signal.signal(signal.SIGCHLD, _sigchld_handler),
            signal.SIGINT: signal.getsignal(signal.SIGINT),
        }
        # Restored in children: the server ignores SIGINT, they must not.
        if self.old_handlers[signal.SIGINT] in (signal.SIG_IGN, None):
            self.old_handlers[signal.SIGINT] = signal.default_int_handler
        # Writing to a pipe from a Python signal handler would be racy.
        signal.set_wakeup_fd(self.sig_w)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.alive_r, selectors.EVENT_READ)
        self.selector.register(self.sig_r, selectors.EVENT_READ)
        while True:
            ready = {key.fileobj for key, _ in self.selector.select()}
            if self.sig_r in ready:
                self.reap_children()
            if self.alive_r in ready and not os.read(self.alive_r, 1):
                # EOF: every client (parent and children) is gone.
                return
            if self.listener in ready:
                self.serve_request()

    def reap_children(self) -> None:
        try:
            while os.read(self.sig_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status_w = self.status_fds.pop(pid, None)
            if status_w is None:
                warnings.warn(f"forkserver: waitpid returned unexpected pid {pid}")
                continue
            try:
                write_signed(status_w, os.waitstatus_to_exitcode(status))
            except OSError:
                pass  # the client is gone
            os.close(status_w)

    def serve_request(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return  # e.g. ECONNABORTED: the client gave up
        with conn:
            fds = self.receive_fds(conn)
        if fds is None:
            return
        status_w, data_r, alive_w, tracker_fd, *child_fds = fds
        try:
            pid = os.fork()
        except OSError as e:
            warnings.warn(f"forkserver: cannot fork: {e}")
            # Closing status_w tells the client (EOF instead of a pid).
            for fd in fds:
                os.close(fd)
            return
        if pid == 0:
            self.run_child(status_w, data_r, alive_w, tracker_fd, child_fds)  # never returns
        try:
            write_signed(status_w, pid)
        except OSError:
            pass  # the client is gone; the child finds its data pipe closed
        self.status_fds[pid] = status_w
        for fd in (data_r, alive_w, tracker_fd, *child_fds):
            os.close(fd)

    def receive_fds(self, conn: socket.socket) -> list[int] | None:
        """Authenticate the client and receive its fds; None if it was refused."""
        try:
            conn.settimeout(_HANDSHAKE_TIMEOUT)
            if not _authenticate_client(conn, self.authkey):
                warnings.warn("forkserver: refused a client that failed authentication")
                return None
            msg, fds, flags, _ = socket.recv_fds(conn, len(_REQUEST), MAXFDS_TO_SEND + 1)
        except (OSError, EOFError) as e:
            util.info("forkserver: dropped a request: %s", e)
            return None
        if msg != _REQUEST or flags & socket.MSG_CTRUNC or not 4 <= len(fds) <= MAXFDS_TO_SEND:
            warnings.warn(f"forkserver: refused a malformed request ({len(fds)} fds)")
            for fd in fds:
                os.close(fd)
            return None
        return fds

    def run_child(
        self, status_w: int, data_r: int, alive_w: int, tracker_fd: int, child_fds: list[int]
    ) -> None:
        """In a new child: drop the server's state and run the Process sent by the client."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig, handler in self.old_handlers.items():
                signal.signal(sig, handler)
            self.selector.close()
            self.listener.close()
            for fd in (self.alive_r, self.sig_r, self.sig_w, *self.status_fds.values()):
                os.close(fd)
            # status_w stays open until we exit: see the module docstring.
            _forkserver._forkserver_alive_fd = alive_w
            _forkserver._inherited_fds = child_fds
            resource_tracker._resource_tracker._adopt_fd(tracker_fd)
            # atexit functions of the server are not ours; those the child
            # registers run when it exits, as in a spawned child.
            atexit._clear()  # type: ignore[attr-defined]
            atexit.register(util._exit_function)
            parent_sentinel = os.dup(data_r)
            code = spawn._main(data_r, parent_sentinel)
        except BaseException:  # noqa: BLE001 - reported; the child exits with code 1
            sys.excepthook(*sys.exc_info())
        finally:
            try:
                atexit._run_exitfuncs()  # type: ignore[attr-defined]
                util._flush_std_streams()
            finally:
                os._exit(code)


#
# Signed numbers on the status pipe
#


def read_signed(fd: int) -> int:
    """Read one signed 8-byte integer from ``fd``; EOFError if it closes first."""
    data = b""
    while len(data) < SIGNED_STRUCT.size:
        chunk = os.read(fd, SIGNED_STRUCT.size - len(data))
        if not chunk:
            raise EOFError("unexpected EOF")
        data += chunk
    return SIGNED_STRUCT.unpack(data)[0]


def write_signed(fd: int, n: int) -> None:
    """Write one signed 8-byte integer to ``fd``."""
    msg = SIGNED_STRUCT.pack(n)
    while msg:
        nbytes = os.write(fd, msg)
        if nbytes == 0:
            raise RuntimeError("should not get here")
        msg = msg[nbytes:]


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload


def _stop(timeout: float | None = 10.0) -> None:
    """Stop the package's fork server if this process started it (for test suites)."""
    _forkserver._stop(timeout)
