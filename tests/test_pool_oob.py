"""Large data through the Pool out of band (memfds, see pool/_oob), under every start method.

Tasks' arguments, a call's function and results of 1 MiB or more: numpy
arrays (empty, odd sizes, non-contiguous, read-only), bytes, bytearrays,
other buffers, whole large pickles; a function shared by every task reaches
each worker as one memfd, mapped copy-on-write; a worker that dies before it
maps what it was sent fails its task alone, and leaves no descriptor behind.
Also the in-band fallback (the side channel refuses a message).
"""

from __future__ import annotations

import array
import functools
import gc
import os
import pickle

import _pool_oob_helpers as h
import pytest
from _fd_helpers import fd_targets

from multiprocess import pool as mpool
from multiprocess import reduction
from multiprocess._memfd import HAVE_MEMFD
from multiprocess.pool import _oob

np = pytest.importorskip("numpy")

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not HAVE_MEMFD, reason="memfds and SEQPACKET sockets are Linux's"),
]

MIB = 1 << 20
WAIT = 60


def _arrays():
    base = np.arange(3 * MIB // 8 + 5, dtype=np.float64)
    readonly = np.arange(MIB + 3, dtype=np.uint8)
    readonly.setflags(write=False)
    return {
        "empty": np.zeros(0),
        "odd size": np.arange(MIB + 3, dtype=np.uint8),
        "large": base,
        "non-contiguous": base[::2],
        "2-d fortran": np.asfortranarray(base[: 512 * 512].reshape(512, 512)),
        "read-only": readonly,
    }


def test_numpy_arguments_and_results(ctx):
    arrays = _arrays()
    with ctx.Pool(2) as p:
        seen = p.map(h.describe, list(arrays.values()), chunksize=1)
        back = p.map(h.echo, list(arrays.values()), chunksize=1)
    for (name, a), got, echoed in zip(arrays.items(), seen, back):
        total = float(a.sum()) if a.size else 0.0
        assert got == ("ndarray", a.shape, name != "read-only", total), name
        assert echoed.dtype == a.dtype and echoed.shape == a.shape, name
        assert np.array_equal(echoed, a), name
    # A result is the caller's to change.
    back[2][0] = 42.0
    assert back[2][0] == 42.0


def test_bytes_bytearray_and_other_buffers(ctx):
    data = os.urandom(MIB + 3)
    payloads = [
        data,
        bytearray(data),
        array.array("d", range(MIB // 8 + 1)),
        pickle.PickleBuffer(bytearray(data)),
        b"",
        bytearray(),
    ]
    with ctx.Pool(2) as p:
        back = p.map(h.echo, payloads, chunksize=1)
        sizes = p.map(h.describe, payloads[:3], chunksize=1)
    assert back[0] == data and type(back[0]) is bytes
    assert back[1] == data and type(back[1]) is bytearray
    assert back[2] == payloads[2] and type(back[2]) is array.array
    assert bytes(back[3]) == data  # a PickleBuffer arrives as its buffer's bytes
    assert back[4:] == [b"", bytearray()]
    assert sizes == [("bytes", MIB + 3), ("bytearray", MIB + 3), ("array", MIB // 8 + 1)]


def test_large_bytes_in_containers(ctx):
    # bytes alone or in small tuples and lists go out of band from their own
    # memory (_oob._LargeBytes); in larger containers, in the whole pickle.
    data = os.urandom(2 * MIB + 1)
    many = [b"x"] * 40 + [data]
    with ctx.Pool(2) as p:
        assert p.starmap(h.echo, [(data,), (b"small",)], chunksize=2) == [data, b"small"]
        assert p.apply(h.echo, ([data, (1, data)],)) == [data, (1, data)]
        assert p.apply(h.echo, (many,)) == many
        assert p.apply(h.echo, (), {"x": data}) == data
        back = p.apply(h.echo, ((data, data),))
        assert back == (data, data) and all(type(b) is bytes for b in back)


def test_whole_large_pickle_both_ways(ctx):
    words = [f"word {i}" for i in range(200_000)]  # a pickle of several MiB, no buffer in it
    with ctx.Pool(2) as p:
        assert p.apply(h.echo, (words,)) == words
        assert p.apply(len, (words,)) == len(words)


def test_shared_function_buffers_cross_once(ctx):
    a = np.arange(2 * MIB, dtype=np.float64)  # 16 MiB, in a partial: the call's function
    with ctx.Pool(2) as p:
        # Both workers busy at once: each is sent the function.
        out = p.map(functools.partial(h.where_is, a), range(16), chunksize=1)
        assert [v for _pid, _inode, v in out] == [float(i) for i in range(16)]
        inodes = {inode for _pid, inode, _v in out}
        # Every worker maps the one memfd made for the function (not a copy each).
        assert len(inodes) == 1 and None not in inodes, out


def test_shared_function_buffers_are_copy_on_write(ctx):
    a = np.zeros(2 * MIB // 8)
    with ctx.Pool(2) as p:
        out = p.map(functools.partial(h.bump_first, a), range(12), chunksize=1)
    by_worker: dict[int, list[float]] = {}
    for pid, before in out:
        by_worker.setdefault(pid, []).append(before)
    # Each worker sees its own writes only, and the caller's array is untouched.
    for values in by_worker.values():
        assert values == [float(k) for k in range(len(values))], by_worker
    assert a[0] == 0.0


def test_repeated_argument_is_one_memfd_per_call():
    a = np.ones(2 * MIB)
    memo: dict = {}
    serializer = reduction.get_serializer("pickle")
    _b1, first = _oob.pack(serializer, (a, 1), memo)
    _b2, second = _oob.pack(serializer, (a, 2), memo)
    memfds = [s for s in first.segments + second.segments if isinstance(s, _oob.Memfd)]
    assert len(memfds) == 2 and memfds[0] is memfds[1]
    # Another array of the same size is another memfd.
    _b3, third = _oob.pack(serializer, (np.ones(2 * MIB), 3), memo)
    assert third.segments[1] is not memfds[0]


def test_starmap_with_a_repeated_array(ctx):
    a = np.arange(MIB // 4, dtype=np.float64)
    with ctx.Pool(2) as p:
        out = p.starmap(h.where_is, [(a, i) for i in range(8)], chunksize=1)
        assert [v for _pid, _inode, v in out] == [float(i) for i in range(8)]
        assert p.starmap(h.total, [(a,)] * 3) == [float(a.sum())] * 3


def _ours_in_dev_shm():
    """The /dev/shm entries and pool memfds this process holds open or mapped.

    (Other processes of the machine come and go in /dev/shm: a listing of
    it before and after would count theirs.)
    """
    held = {target for _fd, target in fd_targets()}
    with open("/proc/self/maps") as f:
        held.update(line.split(None, 5)[-1].strip() for line in f if line.count(" ") >= 5)
    return {x for x in held if x.startswith("/dev/shm/") or "memfd:multiprocess-pool" in x}


def test_worker_killed_before_mapping(ctx):
    big = np.arange(2 * MIB, dtype=np.float64)
    with ctx.Pool(1) as p:  # warm up: the forkserver and whatever a pool opens once
        p.apply(h.total, (big,))
    gc.collect()
    fds, shm = h.open_fds(), _ours_in_dev_shm()

    event = ctx.Event()
    p = ctx.Pool(2, initializer=h.init_die_before_mapping, initargs=(event,))
    try:
        doomed = p.apply_async(h.total, (big,))
        with pytest.raises(mpool.TerminatedWorkerError) as info:
            doomed.get(WAIT)
        assert "SIGKILL" in str(info.value)
        assert event.is_set()
        # The pool goes on, large data included.
        assert p.apply(h.total, (big,)) == float(big.sum())
        assert p.map(h.total, [big, big[::2]], chunksize=1) == [
            float(big.sum()),
            float(big[::2].sum()),
        ]
    finally:
        p.close()
        p.join()
    del doomed, info, p, event
    gc.collect()
    assert h.open_fds() == fds
    assert _ours_in_dev_shm() == shm


def test_in_band_when_the_side_channel_refuses(ctx, monkeypatch):
    # A full (or broken) side channel: the coordinator sends the segments in the frame.
    monkeypatch.setattr(_oob.Channel, "send", lambda self, fds, gifts=0: 0)
    a = np.arange(MIB, dtype=np.float64)
    with ctx.Pool(2) as p:
        assert p.map(functools.partial(h.where_is, a), [3, 5], chunksize=1)[1][2] == 5.0
        back = p.apply(h.echo, (a,))
        assert np.array_equal(back, a) and back.flags.writeable
        assert p.apply(h.echo, (b"z" * (2 * MIB),)) == b"z" * (2 * MIB)


def test_without_out_of_band(ctx, monkeypatch):
    monkeypatch.setattr(_oob, "ENABLED", False)
    a = np.arange(MIB, dtype=np.float64)
    with ctx.Pool(2) as p:
        assert np.array_equal(p.apply(h.echo, (a,)), a)
        assert p.map(functools.partial(h.where_is, a), [1], chunksize=1)[0][1:] == (None, 1.0)
