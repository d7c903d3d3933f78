"""Launcher for the spawn start method on Windows: not implemented yet.

Windows is out of scope for now; this file marks where its launcher goes so that
the platform code stays in platform files.
"""

import sys

__all__ = ["Popen"]  # noqa: F822 - defined once Windows is supported

if sys.platform != "win32":
    raise ImportError("multiprocess.popen_spawn_win32 is only for Windows")
raise ImportError("multiprocess does not support Windows yet")
