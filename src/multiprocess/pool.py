"""pool: not built yet; every public name raises NotImplementedError when used."""

from ._placeholder import placeholder

__all__ = [
    "Pool",
    "ThreadPool",
]

Pool = placeholder(__name__, "Pool", "the Pool")
ThreadPool = placeholder(__name__, "ThreadPool", "the Pool")
