"""This process's open descriptors, from /proc (Linux), for the tests' leak checks.

Importable by the children of every start method, like the other helpers.
"""

from __future__ import annotations

import os


def fd_count() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> set[tuple[int, str]]:
    """This process's open descriptors, as (number, what it refers to) pairs."""
    pairs = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            pairs.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            pass  # the listing's own descriptor, closed already
    return pairs
