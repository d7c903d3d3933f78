"""Task control arguments: timeouts, memory sizes, and a worker's resident memory (layer 5).

``_check_timeout`` and ``_parse_size`` turn what the caller passed into
seconds and bytes, or raise an error that says which forms are accepted.
``_rss_reader`` returns the function that reads a process's resident set
size: ``/proc/<pid>/statm`` on Linux (one small read, no import), psutil
elsewhere (an optional extra, imported only when a memory limit is set).
``_peak_reader`` is the worker's side: its own peak resident memory, which
catches a spike that ends between two of the parent's reads.
"""

from __future__ import annotations

import math
import os
import re
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

from ._exceptions import _short_repr

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*\Z")
# One letter is binary, as in `ulimit`, Docker or `ls -h`; "KB", "MB"... are
# decimal and "KiB", "MiB"... binary, as their standards say.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE_FORMS = (
    'a positive int (bytes) or a string such as "512MiB", "2GB", "1.5G" or "800k" '
    "(KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB and the bare letters "
    "K, M, G, T are powers of 1024; case does not matter)"
)


def _parse_size(value: Any, name: str) -> int | None:
    """``value`` (None, bytes as an int, or a string like "512MiB") as bytes, or None.

    Raises:
        TypeError: not an int, a string or None.
        ValueError: a string in no accepted form, or a size below 1 byte.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be {_SIZE_FORMS}, or None; not {type(value).__name__}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{name} must be {_SIZE_FORMS}; not {value!r}")
        size = int(float(match.group(1)) * unit)
    if size < 1:
        raise ValueError(f"{name} must be at least 1 byte; not {_short_repr(value)}")
    return size


def _check_timeout(value: Any, name: str = "task_timeout") -> float | None:
    """``value`` as seconds (a positive float; ``math.inf``: none), or None.

    Raises:
        TypeError: not a real number or None.
        ValueError: zero, negative or NaN.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds (int or float) or None, "
            f"not {type(value).__name__} ({_short_repr(value)})"
        )
    seconds = float(value)
    if not seconds > 0:  # also NaN
        raise ValueError(
            f"{name} must be a positive number of seconds (math.inf for none), not {value!r}"
        )
    return seconds


def _resolve_timeout(value: Any, default: float | None) -> float | None:
    """The timeout of a call: its own (``math.inf``: none), else the pool's ``default``."""
    seconds = _check_timeout(value)
    if seconds is None:
        return default
    return None if math.isinf(seconds) else seconds


if TYPE_CHECKING:
    RssReader = Callable[[int], Optional[int]]


def _rss_reader(proc: str = "/proc") -> RssReader:
    """A function ``pid -> resident set size in bytes`` (None once the process is gone).

    Raises:
        RuntimeError: neither /proc nor psutil is available here.
    """
    if os.path.exists(f"{proc}/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def statm(pid: int) -> int | None:
            try:
                with open(f"{proc}/{pid}/statm", "rb") as f:
                    return int(f.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                return None

        return statm
    try:
        import psutil  # type: ignore[import-untyped]  # an optional extra
    except ImportError:
        raise RuntimeError(
            f"memory_limit and max_memory_per_child are unavailable on this platform "
            f"({sys.platform}) without psutil: the pool reads a worker's resident memory "
            f"from /proc on Linux and through psutil elsewhere. Install it with "
            f"`pip install 'multiprocess[psutil]'`, or leave both limits unset."
        ) from None

    def with_psutil(pid: int) -> int | None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except (psutil.Error, OSError):
            return None

    return with_psutil


def _peak_reader(proc: str = "/proc") -> Callable[[], int] | None:
    """A function that returns this process's peak resident set size in bytes
    (``VmHWM`` of ``/proc/self/status``); None where there is no /proc.

    Not ``resource.getrusage``: its ``ru_maxrss`` keeps the peak of the
    process that exec'd this one, so a spawned worker would inherit its
    parent's.  The file stays open, and each read (``pread`` at 0) makes it
    anew: some 6 us.
    """
    try:
        fd = os.open(f"{proc}/self/status", os.O_RDONLY)
    except OSError:
        return None

    def peak() -> int:
        data = os.pread(fd, 8192, 0)
        start = data.find(b"VmHWM:")
        if start < 0:
            return 0
        return int(data[start + 6 : data.index(b"kB", start)]) << 10

    return peak


def _format_size(size: int) -> str:
    """``size`` in bytes, for messages: "314572800 bytes (300.0 MiB)"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size} bytes ({size / scale:.1f} {unit})"
    return f"{size} bytes"
