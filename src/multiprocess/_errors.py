"""Exception types shared by every layer (layer 1: no imports from the package).

They are re-exported by :mod:`multiprocess`, :mod:`multiprocess.context` and
:mod:`multiprocess.connection`, where the standard library exposes them.
"""

from __future__ import annotations

__all__ = ["AuthenticationError", "BufferTooShort", "ProcessError", "TimeoutError"]


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
