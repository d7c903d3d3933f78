"""shared_memory: not built yet; every public name raises NotImplementedError when used."""

from ._placeholder import placeholder

__all__ = [
    "SharedMemory",
    "ShareableList",
]

SharedMemory = placeholder(__name__, "SharedMemory", "shared memory")
ShareableList = placeholder(__name__, "ShareableList", "shared memory")
