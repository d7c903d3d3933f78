"""What a pool worker in tests/test_coldstart.py reports (importable under spawn and forkserver).

Kept free of imports: the test checks which modules a worker has loaded.
"""

import sys

# Modules that a short script's pool must not load: the standard library's
# Pool does without them, and each costs milliseconds in the parent and in
# every spawned worker (typing: annotations only; dill: only for objects
# pickle cannot take; the rest: only for the features that use them).
HEAVY = ("typing", "logging", "dill", "ctypes", "concurrent.futures", "asyncio", "tempfile")
# And modules a spawned or forkserver worker must not load either (the parent
# needs some of them to start processes; a forked worker inherits them): the
# standard library's workers load most of these.
WORKER_HEAVY = ("subprocess", "shutil", "hmac", "hashlib", "runpy", "pkgutil")


def heavy_modules(_):
    """The HEAVY modules this process has imported."""
    return sorted(m for m in HEAVY if m in sys.modules)


def worker_heavy_modules(_):
    """The HEAVY and WORKER_HEAVY modules this process has imported."""
    return sorted(m for m in HEAVY + WORKER_HEAVY if m in sys.modules)
