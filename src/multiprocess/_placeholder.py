"""Placeholders for the parts of the API that later work items build (internal).

Each public name of a module that is not built yet is a class whose
construction raises NotImplementedError saying so, so that the module imports,
``__all__`` is complete, and user code fails loudly at the point of use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["placeholder"]


def placeholder(module: str, name: str, feature: str) -> type:
    """Return a class named ``name`` whose construction raises NotImplementedError."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            f"{module}.{name} is not implemented yet ({feature} is still being built); "
            "use the standard library's multiprocessing for it meanwhile"
        )

    return type(name, (), {"__init__": __init__, "__module__": module})
