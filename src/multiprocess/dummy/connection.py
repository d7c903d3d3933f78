"""multiprocess.dummy.connection: connections between threads (not built yet)."""

from .._placeholder import placeholder

__all__ = ["Client", "Listener", "Pipe"]

_FEATURE = "multiprocess.dummy"
Client = placeholder(__name__, "Client", _FEATURE)
Listener = placeholder(__name__, "Listener", _FEATURE)
Pipe = placeholder(__name__, "Pipe", _FEATURE)
