"""Functions and classes that pool workers run in the pool tests (importable under spawn)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time

_state: dict = {}


def square(x):
    return x * x


def add(a, b):
    return a + b


def identity(x):
    return x


def pid_of(_x=None):
    return os.getpid()


def raise_value_error(x):
    raise ValueError(f"bad value {x}")


def kill_self(how):
    """End this process abruptly: 'sigkill', 'segfault' or 'exit'."""
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        segfault()
    elif how == "exit":
        os._exit(1)
    raise AssertionError(f"still alive after {how}")


def die_at(x, target, how):
    """Return x squared, except for ``target``, where the worker dies ``how``."""
    if x == target:
        kill_self(how)
    return x * x


def die_now(how):
    kill_self(how)


class Unpicklable:
    """Refuses to be pickled (by pickle and dill alike)."""

    def __reduce__(self):
        raise TypeError("Unpicklable objects refuse to be pickled")

    def __repr__(self):
        return "<Unpicklable>"


def make_unpicklable(_x=None):
    return Unpicklable()


def _refuse_to_load(message):
    raise RuntimeError(message)


class FailsToLoad:
    """Pickles fine, but raises when unpickled."""

    def __reduce__(self):
        return _refuse_to_load, ("FailsToLoad cannot be unpickled",)


def make_fails_to_load(_x=None):
    return FailsToLoad()


def init_raises():
    raise ValueError("initializer failed on purpose")


def init_exits():
    os._exit(3)


def init_segfaults():
    segfault()


def segfault():
    """Crash with SIGSEGV, quietly.

    A forked child inherits the parent's faulthandler (pytest's faulthandler plugin
    turns it on; PYTHONFAULTHANDLER or -X faulthandler does in any child), which
    would print a "Fatal Python error" dump into a passing run.
    """
    faulthandler.disable()
    ctypes.string_at(0)


def init_store(*values):
    _state["init"] = values


def get_init_state(_x=None):
    return _state.get("init")


def init_with_event(event):
    _state["event"] = event


def signal_then_sleep(seconds):
    """Tell the test (through the initializer's event) that a task runs, then sleep."""
    _state["event"].set()
    time.sleep(seconds)
    return seconds


def wait_for_event(x):
    """Block until the initializer's event is set, then return x."""
    _state["event"].wait(60)
    return x


class CountingCallable:
    """A callable whose pickling is counted in the process that pickles it."""

    pickled = 0

    def __call__(self, x):
        return x + 1

    def __reduce__(self):
        type(self).pickled += 1
        return CountingCallable, ()


def sleep_then_return(x, seconds):
    time.sleep(seconds)
    return x


def close_fds_then_hang(_x=None):
    """Close every descriptor but stdio (pipes and sentinel included), then hang.

    The worker can no longer be reached or watched through its pipes: the
    pool must notice, end it and fail this task.
    """
    os.closerange(3, 1 << 16)
    signal.pause()


_started: list = []


def init_started_event(event):
    """Initializer: keep the test's event, set by announce_then_block."""
    _started[:] = [event]


def announce_then_block(x):
    """Set the started event, then block for ever (until the worker is killed)."""
    import threading

    _started[0].set()
    threading.Event().wait()
    return x
