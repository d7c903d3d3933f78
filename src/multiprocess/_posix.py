"""POSIX primitives shared by the launchers and the channels (layer 1)."""

from __future__ import annotations

import selectors
import time
from typing import Any, List, Optional, Sequence

__all__ = ["wait_readable"]

_Selector: Any = getattr(selectors, "PollSelector", selectors.SelectSelector)


def wait_readable(objects: Sequence[Any], timeout: Optional[float] = None) -> List[Any]:
    """Wait until some of ``objects`` (fds or objects with ``fileno()``) are readable.

    Returns the ready ones, in their original order ([] on timeout).  A negative
    timeout counts as zero.  Interrupted waits resume with the remaining time.
    """
    with _Selector() as selector:
        for obj in objects:
            selector.register(obj, selectors.EVENT_READ)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = selector.select(timeout)
            if ready:
                keys = {key.fileobj for key, _events in ready}
                return [obj for obj in objects if obj in keys]
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout < 0:
                    return []
