"""heap: not built yet; every public name raises NotImplementedError when used."""

from ._placeholder import placeholder

__all__ = [
    "BufferWrapper",
]

BufferWrapper = placeholder(__name__, "BufferWrapper", "the shared heap")
