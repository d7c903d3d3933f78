"""Exception types shared by every layer (layer 1: no imports from the package).

They are re-exported by :mod:`multiprocess`, :mod:`multiprocess.context` and
:mod:`multiprocess.connection`, where the standard library exposes them.
"""

from __future__ import annotations

import builtins

__all__ = [
    "AuthenticationError",
    "BufferTooShort",
    "ProcessError",
    "TaskTimeoutError",
    "TimeoutError",
]


class ProcessError(Exception):
    """Base class of this package's errors."""


class BufferTooShort(ProcessError):
    """``Connection.recv_bytes_into`` was given a buffer smaller than the message.

    ``args[0]`` holds the whole message as bytes.
    """


class TimeoutError(ProcessError):
    """An operation with a timeout did not complete in time."""


class AuthenticationError(ProcessError):
    """The HMAC authkey challenge between two peers failed."""


class TaskTimeoutError(ProcessError, builtins.TimeoutError):
    """A pool task (one item of a ``map``) ran longer than its ``task_timeout``.

    The pool killed the worker process running it and started a replacement;
    the other items of the call go on.  The message names the function, the
    item's index in the call, a short repr of the item and the limit; the
    attributes ``timeout`` (seconds), ``index`` (the item's index in the call,
    None for ``apply``) and ``pid`` (the worker killed) say the same.

    It is the builtin ``TimeoutError`` (which ``except TimeoutError`` catches
    without an import) and a :class:`ProcessError`; it is not this package's
    own ``multiprocess.TimeoutError``, which ``AsyncResult.get(timeout)``
    raises while the result may still come.
    """


class _TruncatedMessageError(EOFError, OSError):
    """The peer closed the connection in the middle of a message.

    An ``EOFError`` (the peer is gone) and an ``OSError`` (what the standard
    library raises here), so that callers written for either keep working.
    """
