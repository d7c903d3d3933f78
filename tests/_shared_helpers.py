"""Functions that child processes run in the shared-state tests (test_shared_state.py).

They live in an importable module so that spawn and forkserver children can
find them.  ``python -m _shared_helpers leak METHOD`` runs the leak scenario
of ``test_killed_child_leaves_nothing_behind`` as a program of its own.
"""

from __future__ import annotations

import ctypes
import json
import sys

from multiprocess import shared_memory


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


class Point3(Point):
    _fields_ = [("z", ctypes.c_longlong)]


# -- sharedctypes ---------------------------------------------------------------


def add_under_lock(value, times):
    """Increment a synchronized Value ``times`` times, each under its lock."""
    for _ in range(times):
        with value.get_lock():
            value.value += 1


def add_with_lock(value, lock, times):
    """Increment a raw Value ``times`` times under a separately passed lock."""
    for _ in range(times):
        with lock:
            value.value += 1


def fill_slot(arr, index, times):
    """Add 1 to ``arr[index]`` ``times`` times (each child owns one slot)."""
    for _ in range(times):
        arr[index] += 1


def prefix_sums(arr):
    """Replace ``arr`` by its prefix sums, through a slice write."""
    values = list(arr[:])
    for i in range(1, len(values)):
        values[i] += values[i - 1]
    arr[:] = values


def double_everything(number, real, point, string, numbers):
    """Double a Value, a raw double, a Structure, a char Array and an Array in place."""
    number.value *= 2
    real.value *= 2
    point.x *= 2
    point.y *= 2
    string.value = string.value * 2
    for i in range(len(numbers)):
        numbers[i] *= 2


def allocate_after_parent(ready, go, done):
    """Allocate shared memory in a child, then scribble over all of it on cue.

    If the child's heap handed out space that the parent's heap still thinks
    is free (the bug a forked heap must avoid), the parent's next allocation
    would share it and see the 0xFF bytes.
    """
    from multiprocess import sharedctypes

    mine = sharedctypes.RawArray("B", 4096)
    ready.set()
    go.wait(60)
    ctypes.memset(ctypes.addressof(mine), 0xFF, ctypes.sizeof(mine))
    done.set()


# -- shared_memory ---------------------------------------------------------------


def write_shm(name_or_shm, data):
    """Attach to a block (by name, or the object itself) and write ``data`` at 0."""
    if isinstance(name_or_shm, str):
        shm = shared_memory.SharedMemory(name_or_shm)
    else:
        shm = name_or_shm
    shm.buf[: len(data)] = data
    shm.close()


def edit_shareable_list(name_or_list):
    """Change items of a ShareableList in place, changing some types."""
    if isinstance(name_or_list, str):
        sl = shared_memory.ShareableList(name=name_or_list)
    else:
        sl = name_or_list
    sl[0] = sl[0] * 10
    sl[1] = "child"
    sl[2] = None
    sl[-1] = b"bytes"
    sl.shm.close()


# -- the leak scenario ----------------------------------------------------------


def create_and_hang(conn):
    """Create a shared memory block and a named semaphore, report them, block."""
    import multiprocess

    shm = shared_memory.SharedMemory(create=True, size=4096)
    # A spawn-context lock has a name (a fork-context one is unlinked at once).
    lock = multiprocess.get_context("spawn").Lock()
    conn.send((shm._name, lock._semlock.name))
    conn.recv()  # never comes: the parent kills us first


def leak_scenario(method):
    import _shared_helpers  # by its module name, not as __main__, for spawned children

    import multiprocess

    ctx = multiprocess.get_context(method)
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=_shared_helpers.create_and_hang, args=(child_end,))
    p.start()
    shm_name, sem_name = parent_end.recv()
    print(json.dumps({"shm": shm_name, "sem": sem_name}), flush=True)
    p.kill()
    p.join()
    print(json.dumps({"exitcode": p.exitcode}), flush=True)


def bump_point(point, points):
    point.x += 1
    point.y = 2.5
    points[1].x = 7


def main_structure_scenario(method):
    """Share ctypes objects of a Structure defined in __main__ (run as a script)."""
    import _shared_helpers

    import multiprocess

    assert Point.__module__ == "__main__"
    ctx = multiprocess.get_context(method)
    point = ctx.Value(Point, 1, 0.5)
    points = ctx.RawArray(Point, 2)
    p = ctx.Process(target=_shared_helpers.bump_point, args=(point, points))
    p.start()
    p.join()
    result = {"exitcode": p.exitcode, "x": point.x, "y": point.y, "x1": points[1].x}
    print(json.dumps(result), flush=True)


def make_segment(track):
    """Create a block (tracked or not), print its name and exit without unlinking."""
    shm = shared_memory.SharedMemory(create=True, size=64, track=track)
    print(shm.name, flush=True)
    shm.close()


if __name__ == "__main__":
    if sys.argv[1] == "leak":
        leak_scenario(sys.argv[2])
    elif sys.argv[1] == "main-struct":
        main_structure_scenario(sys.argv[2])
    elif sys.argv[1] == "segment":
        make_segment(sys.argv[2] == "track")
    else:
        raise SystemExit(f"unknown scenario {sys.argv[1]!r}")
