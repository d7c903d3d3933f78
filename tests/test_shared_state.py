"""Shared ctypes, the shared heap and shared memory blocks, under every start method."""

from __future__ import annotations

import array
import ctypes
import gc
import json
import os
import pickle
import random
import subprocess
import sys
import threading
import time

import _shared_helpers as h
import pytest

import multiprocess as mp
from multiprocess import heap, shared_memory, sharedctypes

HERE = os.path.dirname(os.path.abspath(__file__))
DEV_SHM = "/dev/shm"


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def run(ctx, target, *args):
    p = start(ctx, target, *args)
    p.join(60)
    assert p.exitcode == 0


def join_all(procs):
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_public_names():
    assert set(sharedctypes.__all__) == {
        "RawValue",
        "RawArray",
        "Value",
        "Array",
        "copy",
        "synchronized",
    }
    assert heap.__all__ == ["BufferWrapper"]
    assert set(shared_memory.__all__) == {"SharedMemory", "ShareableList"}
    for module in (sharedctypes, heap, shared_memory):
        for name in module.__all__:
            assert hasattr(module, name)
    for name in ("Synchronized", "SynchronizedArray", "SynchronizedString", "typecode_to_type"):
        assert hasattr(sharedctypes, name)
    assert callable(shared_memory._make_filename)


# -- Value and Array across processes ---------------------------------------------


def test_value_incremented_by_children_under_its_lock(ctx):
    value = ctx.Value("i", 0)
    procs = [start(ctx, h.add_under_lock, value, 200) for _ in range(4)]
    join_all(procs)
    assert value.value == 800


def test_raw_value_with_a_separate_lock(ctx):
    value = ctx.RawValue("q", 2**40)
    lock = ctx.Lock()
    procs = [start(ctx, h.add_with_lock, value, lock, 100) for _ in range(3)]
    join_all(procs)
    assert value.value == 2**40 + 300


def test_array_slots_written_by_children(ctx):
    arr = ctx.Array("d", 4)
    assert list(arr) == [0.0] * 4
    procs = [start(ctx, h.fill_slot, arr, i, 10 * (i + 1)) for i in range(4)]
    join_all(procs)
    assert arr[:] == [10.0, 20.0, 30.0, 40.0]


@pytest.mark.parametrize("raw", [False, True], ids=["Array", "RawArray"])
def test_array_slice_written_by_child(ctx, raw):
    seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
    arr = ctx.RawArray("i", seq) if raw else ctx.Array("i", seq)
    assert len(arr) == 10
    assert arr[3] == 821
    assert list(arr[2:7]) == seq[2:7]
    arr[4:8] = seq[4:8] = array.array("i", [1, 2, 3, 4])
    assert list(arr[:]) == seq
    run(ctx, h.prefix_sums, arr)
    expected = list(seq)
    for i in range(1, len(expected)):
        expected[i] += expected[i - 1]
    assert list(arr) == expected


@pytest.mark.parametrize("lock", [False, True], ids=["raw", "synchronized"])
def test_mixed_objects_doubled_by_child(ctx, lock):
    number = ctx.Value("i", 7, lock=lock)
    real = ctx.RawValue(ctypes.c_double, 1.0 / 3.0)
    point = ctx.Value(h.Point, 3, 2.0, lock=lock)
    string = ctx.Array("c", 20, lock=lock)
    string.value = b"hello"
    numbers = ctx.Array("d", range(10), lock=lock)
    run(ctx, h.double_everything, number, real, point, string, numbers)
    assert number.value == 14
    assert real.value == pytest.approx(2.0 / 3.0)
    assert (point.x, point.y) == (6, 4.0)
    assert string.value == b"hellohello"
    assert list(numbers) == [2.0 * i for i in range(10)]


def test_structure_defined_in_main(start_method):
    # dill cannot pickle ctypes types by value: they travel by name.
    proc = run_helper("main-struct", start_method)
    result = json.loads(proc.stdout)
    assert result == {"exitcode": 0, "x": 2, "y": 2.5, "x1": 7}


def test_forked_child_heap_does_not_reuse_the_parents_free_space(ctx):
    # Leave the parent's heap with a large free block: without a fresh heap
    # in the child, both would carve their next block from it, at one place.
    scratch = sharedctypes.RawArray("B", 1 << 16)
    del scratch
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    p = start(ctx, h.allocate_after_parent, ready, go, done)
    assert ready.wait(60)
    mine = sharedctypes.RawArray("B", 4096)
    go.set()
    assert done.wait(60)
    join_all([p])
    assert bytes(mine) == bytes(4096)


# -- the wrappers --------------------------------------------------------------


def test_lock_argument():
    value = mp.Value("i", 5)
    assert isinstance(value, sharedctypes.Synchronized)
    assert value.get_obj().value == 5
    assert value.get_lock() is not None

    lock = mp.Lock()
    shared = mp.Value("i", 5, lock=lock)
    assert shared.get_lock() is lock
    assert shared.acquire() is True
    shared.release()

    none = mp.Array("i", 3, lock=None)
    assert hasattr(none, "get_lock")

    raw = mp.Value("i", 5, lock=False)
    assert isinstance(raw, ctypes.c_int)
    assert not hasattr(raw, "get_lock")
    assert not hasattr(mp.RawArray("i", 3), "get_obj")


def test_wrapper_kinds_and_repr():
    value = mp.Value("h", -3)
    assert repr(value) == "<Synchronized wrapper for c_short(-3)>"
    arr = mp.Array("i", [1, 2, 3])
    assert type(arr) is sharedctypes.SynchronizedArray
    assert repr(arr).startswith("<SynchronizedArray wrapper for <")
    string = mp.Array("c", b"abc\0def")
    assert type(string) is sharedctypes.SynchronizedString
    assert string.value == b"abc"
    assert string.raw == b"abc\0def"
    string.raw = b"xyz\0uvw"
    assert string[:] == b"xyz\0uvw"
    point = mp.Value(h.Point3, 1, 2.5, 3)
    assert type(point).__name__ == "SynchronizedPoint3"
    assert (point.x, point.y, point.z) == (1, 2.5, 3)
    point.z = 2**40
    assert point.get_obj().z == 2**40


def test_typecodes_and_zero_fill():
    for code, value in [
        ("b", -5),
        ("B", 250),
        ("H", 65000),
        ("I", 2**31),
        ("L", 7),
        ("Q", 2**63),
        ("f", 0.5),
        ("u", "é"),
        ("c", b"x"),
    ]:
        assert mp.RawValue(code, value).value == value
        zero = mp.RawValue(code)
        assert bytes(zero) == bytes(ctypes.sizeof(zero))
    for _ in range(3):  # blocks freed by the previous round are reused: still zeros
        arr = mp.RawArray("i", 100)
        assert list(arr) == [0] * 100
        arr[:] = range(1, 101)
        del arr
    point = mp.RawValue(h.Point, 7)  # fields without an initial value are zero
    assert (point.x, point.y) == (7, 0.0)
    assert list(mp.RawArray("d", (x / 2 for x in range(4)))) == [0.0, 0.5, 1.0, 1.5]
    assert len(mp.RawArray("i", 0)) == 0


def test_copy_and_synchronized():
    point = h.Point(2, 5.0)
    copied = sharedctypes.copy(point)
    point.x = 0
    assert (copied.x, copied.y) == (2, 5.0)

    wrapped = sharedctypes.synchronized(copied)
    assert isinstance(wrapped, sharedctypes.SynchronizedBase)
    with wrapped:
        wrapped.x = 9
    assert copied.x == 9
    snapshot = sharedctypes.copy(wrapped)  # copies the wrapped object
    wrapped.x = 10
    assert snapshot.x == 9

    lock = mp.RLock()
    arr = sharedctypes.synchronized(mp.RawArray("i", [1, 2]), lock)
    assert arr.get_lock() is lock
    with pytest.raises(TypeError, match="already synchronized"):
        sharedctypes.synchronized(arr)


def test_bad_input():
    with pytest.raises(TypeError, match="typecode"):
        mp.Value("x")
    with pytest.raises(TypeError, match="typecode"):
        mp.RawArray("zz", 3)
    with pytest.raises(TypeError):
        mp.RawValue(int, 3)
    with pytest.raises(TypeError):
        mp.RawValue("i", "not a number")
    with pytest.raises(ValueError, match=">= 0"):
        mp.RawArray("i", -1)
    with pytest.raises(ValueError, match=">= 0"):
        mp.Array("i", -5)
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        mp.Value("i", 5, lock="navalue")
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        mp.Array("i", range(10), lock="notalock")
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        sharedctypes.synchronized(mp.RawValue("i"), object())
    with pytest.raises(ValueError):
        heap.BufferWrapper(-1)
    with pytest.raises(OverflowError):
        heap.BufferWrapper(sys.maxsize)


def test_shared_objects_travel_to_children_only():
    value = mp.Value("i", 1)
    raw = mp.RawValue("i", 2)
    arr = mp.RawArray("d", 3)
    wrapper = heap.BufferWrapper(8)
    for obj in (value, raw, wrapper):
        with pytest.raises(RuntimeError, match="inheritance"):
            pickle.dumps(obj)
    with pytest.raises(pickle.PicklingError):  # array types have no importable name
        pickle.dumps(arr)
    a, b = mp.Pipe()
    with a, b:
        for obj in (value, raw, arr, wrapper):
            with pytest.raises(RuntimeError, match="inheritance"):
                a.send(obj)
        # Unshared ctypes objects of the same types still pickle (by value).
        a.send(ctypes.c_int(7))
        assert b.recv().value == 7
        a.send((ctypes.c_double * 3)(1.5, 2.5, 3.5))
        assert list(b.recv()) == [1.5, 2.5, 3.5]


# -- the heap ------------------------------------------------------------------


@pytest.fixture
def fresh_heap(monkeypatch):
    """A pristine heap that gives every empty arena back at once."""
    new = heap.Heap()
    new._DISCARD_FREE_SPACE_LARGER_THAN = 0
    monkeypatch.setattr(heap.BufferWrapper, "_heap", new)
    return new


def check_heap_tiles_its_arenas(the_heap):
    """Free and allocated blocks cover every arena exactly, without overlap."""
    with the_heap._lock:
        spans = {id(arena): [] for arena in the_heap._arenas}
        for seq in the_heap._len_to_seq.values():
            for arena, start, stop in seq:
                spans[id(arena)].append((start, stop))
        for arena, blocks in the_heap._allocated_blocks.items():
            spans[id(arena)].extend(blocks)
        for arena in the_heap._arenas:
            edges = sorted(spans[id(arena)])
            assert edges[0][0] == 0
            assert edges[-1][1] == arena.size
            for (_, stop), (start, _) in zip(edges, edges[1:]):
                assert stop == start


def assert_heap_empty(the_heap):
    gc.collect()
    assert the_heap._n_mallocs == the_heap._n_frees
    assert the_heap._pending_free_blocks == []
    assert the_heap._arenas == []
    assert the_heap._allocated_blocks == {}
    assert the_heap._len_to_seq == {}


def test_heap_many_allocations_and_frees(fresh_heap):
    rng = random.Random(1234)
    blocks = []
    for _ in range(3000):
        size = int(rng.lognormvariate(0, 1) * 1000)
        blocks.append(heap.BufferWrapper(size))
        if len(blocks) > 50:
            del blocks[rng.randrange(50)]
    check_heap_tiles_its_arenas(fresh_heap)
    assert fresh_heap._n_mallocs - fresh_heap._n_frees == len(blocks)
    rng.shuffle(blocks)
    blocks.clear()
    assert_heap_empty(fresh_heap)


def test_heap_blocks_do_not_overlap(fresh_heap):
    wrappers = [heap.BufferWrapper(size) for size in (1, 15, 16, 17, 100, 4096, 10000)]
    for i, w in enumerate(wrappers):
        view = w.create_memoryview()
        assert len(view) == w._state[1]
        view[:] = bytes([i + 1]) * len(view)
    for i, w in enumerate(wrappers):
        assert bytes(w.create_memoryview()) == bytes([i + 1]) * w._state[1]
        (_arena, start, _stop), _size = w._state
        assert start % 16 == 0
    del wrappers, w, view
    assert_heap_empty(fresh_heap)


def test_heap_threads(fresh_heap):
    errors = []

    def churn(seed):
        try:
            rng = random.Random(seed)
            mine = []
            for _ in range(1000):
                w = heap.BufferWrapper(rng.randrange(1, 3000))
                w.create_memoryview()[:1] = bytes([seed])
                mine.append(w)
                if len(mine) > 20:
                    victim = mine.pop(rng.randrange(len(mine)))
                    assert victim.create_memoryview()[0] == seed
            for w in mine:
                assert w.create_memoryview()[0] == seed
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(i + 1,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert_heap_empty(fresh_heap)


def test_heap_freed_by_the_garbage_collector(fresh_heap):
    # Blocks in reference cycles are freed by the collector, possibly while
    # the heap's lock is held by malloc() in the same thread: no deadlock.
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(3000):
            a = heap.BufferWrapper(1)
            b = heap.BufferWrapper(1)
            a.buddy, b.buddy = b, a
        del a, b
    finally:
        gc.set_threshold(*thresholds)
    gc.collect()
    heap.BufferWrapper(1)  # frees what is still pending
    gc.collect()
    assert_heap_empty(fresh_heap)


def test_heap_after_fork_starts_empty(fresh_heap):
    w = heap.BufferWrapper(100)
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = fresh_heap._arenas == [] and fresh_heap._n_mallocs == 0
        ok = ok and not fresh_heap._lock.locked()
        os.write(wfd, b"1" if ok else b"0")
        os._exit(0)
    os.close(wfd)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert len(fresh_heap._arenas) == 1
    del w
    assert_heap_empty(fresh_heap)


# -- SharedMemory ----------------------------------------------------------------


@pytest.fixture
def shm():
    block = shared_memory.SharedMemory(create=True, size=512)
    yield block
    block.close()
    try:
        block.unlink()
    except FileNotFoundError:
        pass


def test_shared_memory_basics(shm):
    assert shm.size >= 512
    assert len(shm.buf) == shm.size
    assert not shm.name.startswith("/")
    assert shm._name == "/" + shm.name
    assert repr(shm) == f"SharedMemory({shm.name!r}, size={shm.size})"
    shm.buf[:5] = b"hello"
    other = shared_memory.SharedMemory(shm.name, size=10 * shm.size)  # size ignored
    assert other.size == shm.size
    assert bytes(other.buf[:5]) == b"hello"
    other.close()
    assert other.buf is None
    other.close()  # twice is fine
    copy = pickle.loads(pickle.dumps(shm))
    copy.buf[:5] = b"HELLO"
    assert bytes(shm.buf[:5]) == b"HELLO"
    copy.close()


def test_shared_memory_across_processes(ctx, shm):
    run(ctx, h.write_shm, shm.name, b"howdy")
    assert bytes(shm.buf[:5]) == b"howdy"
    run(ctx, h.write_shm, shm, b"HELLO")  # the object travels by name
    assert bytes(shm.buf[:5]) == b"HELLO"


def test_shared_memory_named_by_caller():
    name = f"mpt_{os.getpid()}_{random.randrange(1 << 30)}"
    block = shared_memory.SharedMemory(name, create=True, size=100)
    try:
        assert block.name == name
        with pytest.raises(FileExistsError):
            shared_memory.SharedMemory(name, create=True, size=100)
    finally:
        block.close()
        block.unlink()
    with pytest.raises(FileNotFoundError):
        block.unlink()  # the second unlink
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name)


def test_shared_memory_bad_input():
    with pytest.raises(ValueError, match="positive"):
        shared_memory.SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError, match="different from zero"):
        shared_memory.SharedMemory(create=True, size=0)
    with pytest.raises(ValueError, match="different from zero"):
        shared_memory.SharedMemory(create=True)
    with pytest.raises(ValueError, match="only be None if create=True"):
        shared_memory.SharedMemory()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(f"mpt_not_there_{os.getpid()}")


def test_make_filename_collision_is_retried(monkeypatch, shm):
    fresh = f"/mpt_{os.getpid()}_{random.randrange(1 << 30)}"
    names = iter([shm._name, fresh])
    monkeypatch.setattr(shared_memory, "_make_filename", lambda: next(names))
    block = shared_memory.SharedMemory(create=True, size=1)
    try:
        assert block._name == fresh
    finally:
        block.close()
        block.unlink()


def run_helper(*args, timeout=90):
    """Run ``python -m _shared_helpers ARGS`` to completion.

    Returns once the program and its helpers (the resource tracker, which
    keeps stderr, and the fork server) have all exited.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "_shared_helpers", *args],
        check=False,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def exists(name):
    try:
        block = shared_memory.SharedMemory(name)
    except FileNotFoundError:
        return False
    block.close()
    return True


def wait_until_gone(check, what, deadline=30.0):
    end = time.monotonic() + deadline
    while check():
        if time.monotonic() > end:
            pytest.fail(f"{what} is still there {deadline}s after its program exited")
        time.sleep(0.05)


def test_track_false_segment_outlives_its_program():
    name = run_helper("segment", "untracked").stdout.strip()
    try:
        assert exists(name)  # the tracker was not told: nobody unlinked it
    finally:
        block = shared_memory.SharedMemory(name)
        block.close()
        block.unlink()


def test_tracked_segment_is_unlinked_when_its_program_exits():
    proc = run_helper("segment", "track")
    name = proc.stdout.strip()
    wait_until_gone(lambda: exists(name), f"shared memory {name!r}")
    assert "leaked shared_memory" in proc.stderr


def test_unlink_with_track_false_does_not_touch_the_tracker(monkeypatch):
    calls = []
    monkeypatch.setattr(shared_memory.resource_tracker, "register", lambda *a: calls.append(a))
    monkeypatch.setattr(shared_memory.resource_tracker, "unregister", lambda *a: calls.append(a))
    block = shared_memory.SharedMemory(create=True, size=8, track=False)
    block.close()
    block.unlink()
    assert calls == []
    block = shared_memory.SharedMemory(create=True, size=8)
    attached = shared_memory.SharedMemory(block.name)
    assert calls == [(block._name, "shared_memory")]  # the creator only
    attached.close()
    block.close()
    block.unlink()
    assert calls[-1] == (block._name, "shared_memory")


@pytest.mark.skipif(not os.path.isdir(DEV_SHM), reason="no /dev/shm on this system")
def test_killed_child_leaves_nothing_behind(start_method):
    proc = run_helper("leak", start_method)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    names, status = lines[0], lines[1]
    assert status["exitcode"] == -9
    shm_file = os.path.join(DEV_SHM, names["shm"].lstrip("/"))
    sem_file = os.path.join(DEV_SHM, "sem." + names["sem"].lstrip("/"))
    wait_until_gone(lambda: os.path.exists(shm_file), shm_file)
    wait_until_gone(lambda: os.path.exists(sem_file), sem_file)
    assert "leaked shared_memory" in proc.stderr
    assert "leaked semaphore" in proc.stderr


# -- ShareableList ---------------------------------------------------------------


@pytest.fixture
def sl():
    lst = shared_memory.ShareableList(["howdy", b"HoWdY", -273.154, 100, None, True, 42])
    yield lst
    lst.shm.close()
    lst.shm.unlink()


def test_shareable_list_basics(sl):
    assert sl.format == "8s8sdqxxxxxx?xxxxxxxx?q"
    assert len(sl) == 7
    assert list(sl) == ["howdy", b"HoWdY", -273.154, 100, None, True, 42]
    assert sl[-2] is True
    assert repr(sl) == f"ShareableList({list(sl)!r}, name={sl.shm.name!r})"
    assert sl.index(100) == 3
    assert sl.count(42) == 1
    sl[4] = "some"
    assert sl.format == "8s8sdq8sxxxxxxx?q"
    sl[0] = "encodés"  # exactly 8 bytes of UTF-8
    assert sl[0] == "encodés"
    assert sl[1] == b"HoWdY"
    sl[3] = 2.5
    sl[6] = False
    assert list(sl) == ["encodés", b"HoWdY", -273.154, 2.5, "some", True, False]

    twin = shared_memory.ShareableList(name=sl.shm.name)
    twin[-1] = 880
    assert sl[-1] == 880
    twin.shm.close()

    clone = pickle.loads(pickle.dumps(sl))
    assert clone is not sl and list(clone) == list(sl)
    clone.shm.close()

    empty = shared_memory.ShareableList()
    try:
        assert len(empty) == 0 and empty.format == ""
        with pytest.raises(ValueError):
            empty.index(None)
    finally:
        empty.shm.close()
        empty.shm.unlink()


def test_shareable_list_non_ascii_strings_are_not_truncated():
    lst = shared_memory.ShareableList(["ééééé", "日本語のテキスト"])
    try:
        assert list(lst) == ["ééééé", "日本語のテキスト"]
    finally:
        lst.shm.close()
        lst.shm.unlink()


def test_shareable_list_bad_input(sl):
    with pytest.raises(IndexError):
        sl[7]
    with pytest.raises(IndexError):
        sl[-8]
    with pytest.raises(IndexError):
        sl[7] = 2
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[4] = "far too many"
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[1] = b"123456789"
    assert sl[1] == b"HoWdY"
    with pytest.raises(TypeError, match="cannot store 'list'"):
        sl[3] = [1, 2]
    with pytest.raises(KeyError):  # what the standard library raises
        shared_memory.ShareableList([{}])
    with pytest.raises(ValueError, match="not in this container"):
        sl.index("absent")
    with pytest.raises(FileNotFoundError):
        shared_memory.ShareableList(name=f"mpt_not_there_{os.getpid()}")


_STDLIB_READER = """
import json, sys
from multiprocessing import resource_tracker, shared_memory
sl = shared_memory.ShareableList(name=sys.argv[1])
# Python < 3.13 registers blocks it merely attaches to: its tracker would unlink ours.
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(json.dumps([repr(item) for item in sl]), sl.format)
sl[0] = "stdlib"
sl.shm.close()
"""


def test_shareable_list_layout_is_the_standard_librarys(sl):
    before, fmt_before = [repr(item) for item in sl], sl.format
    proc = subprocess.run(
        [sys.executable, "-c", _STDLIB_READER, sl.shm.name],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    items, fmt = proc.stdout.rsplit(" ", 1)
    assert json.loads(items) == before
    assert fmt.strip() == fmt_before
    assert sl[0] == "stdlib"


def test_shareable_list_across_processes(ctx):
    lst = shared_memory.ShareableList([4, "initial", 2.5, b"xx"])
    try:
        run(ctx, h.edit_shareable_list, lst.shm.name)
        assert list(lst) == [40, "child", None, b"bytes"]
        lst[1] = "again"
        run(ctx, h.edit_shareable_list, lst)  # the list travels by name
        assert list(lst) == [400, "child", None, b"bytes"]
    finally:
        lst.shm.close()
        lst.shm.unlink()
