"""managers: not built yet; every public name raises NotImplementedError when used."""

from ._placeholder import placeholder

__all__ = [
    "BaseManager",
    "SyncManager",
    "BaseProxy",
    "Token",
    "SharedMemoryManager",
]

BaseManager = placeholder(__name__, "BaseManager", "Managers")
SyncManager = placeholder(__name__, "SyncManager", "Managers")
BaseProxy = placeholder(__name__, "BaseProxy", "Managers")
Token = placeholder(__name__, "Token", "Managers")
SharedMemoryManager = placeholder(__name__, "SharedMemoryManager", "Managers")


class RemoteError(Exception):
    """An exception raised in a manager's server process, with its traceback."""


def _register(
    cls: type,
    typeid: str,
    callable: object = None,
    proxytype: object = None,
    exposed: object = None,
    method_to_typeid: object = None,
    create_method: bool = True,
) -> None:
    # Registration happens at import time in user modules: keep it working.
    registry = dict(cls.__dict__.get("_registry", getattr(cls, "_registry", {})))
    registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
    cls._registry = registry  # type: ignore[attr-defined]


BaseManager.register = classmethod(_register)  # type: ignore[attr-defined]
