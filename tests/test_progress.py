"""Progress of a map: ``progress=`` on the maps of Pool, ThreadPool and the executor.

It counts items, not chunks; a callable sees ``(done, total)`` strictly
increasing up to the total; a tqdm-like object is updated and gets its total;
``progress=True`` makes a tqdm bar, closed when the call ends, or raises an
ImportError naming the extra without tqdm; a bad value is a TypeError at the
call; a progress callable that raises does not break the pool.
"""

from __future__ import annotations

import sys
import warnings

import _item_helpers as h
import pytest

from multiprocess import pool as mpool
from multiprocess.futures import ProcessPoolExecutor

pytestmark = pytest.mark.timeout(120)


def check_counts(recorder, total, chunks):
    """Counts strictly increasing, by one chunk's items at a time (chunks end in any
    order), ending at the sum of ``chunks``, each call with ``total``."""
    counts = recorder.counts
    assert counts, "the progress callable was never called"
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    steps = [b - a for a, b in zip([0, *counts], counts)]
    assert sorted(steps) == sorted(chunks), counts
    assert {t for _d, t in recorder.calls} == {total}


def pool_maps(p, items, chunksize, progress):
    """Each map-like call of ``p`` with ``progress``, as thunks that run it to its end."""
    pairs = [(x, 0) for x in items]
    return {
        "map": lambda: p.map(h.identity, items, chunksize, progress=progress),
        "map_async": lambda: p.map_async(h.identity, items, chunksize, progress=progress).get(60),
        "starmap": lambda: p.starmap(h.plus, pairs, chunksize, progress=progress),
        "starmap_async": lambda: p.starmap_async(h.plus, pairs, chunksize, progress=progress).get(
            60
        ),
        "imap": lambda: list(p.imap(h.identity, items, chunksize, progress=progress)),
        "imap_unordered": lambda: sorted(
            p.imap_unordered(h.identity, items, chunksize, progress=progress)
        ),
    }


@pytest.mark.parametrize(
    "api", ["map", "map_async", "starmap", "starmap_async", "imap", "imap_unordered"]
)
def test_a_callable_sees_the_items_done_of_each_chunk(ctx, api):
    items = list(range(100))
    with ctx.Pool(2) as p:
        recorder = h.Recorder()
        assert pool_maps(p, items, 25, recorder)[api]() == items
        check_counts(recorder, 100, [25] * 4)


def test_imap_counts_each_item_and_a_short_last_chunk(ctx):
    with ctx.Pool(2) as p:
        recorder = h.Recorder()
        assert list(p.imap(h.identity, range(10), progress=recorder)) == list(range(10))
        check_counts(recorder, 10, [1] * 10)
        # No len(): the total is unknown, the last chunk's items are still its own.
        recorder = h.Recorder()
        result = list(p.imap(h.identity, iter(range(10)), chunksize=3, progress=recorder))
        assert result == list(range(10))
        check_counts(recorder, None, [3, 3, 3, 1])


def test_failed_items_count_as_done(ctx):
    with ctx.Pool(2) as p:
        recorder = h.Recorder()
        with pytest.raises(ValueError):
            p.map(h.square, range(40), chunksize=5, progress=recorder)
        check_counts(recorder, 40, [5] * 8)
        # The chunk of item 17 is the last one: when imap raises its error,
        # every chunk has been counted.
        recorder = h.Recorder()
        with pytest.raises(ValueError):
            list(p.imap(h.square, iter(range(18)), chunksize=6, progress=recorder))
        check_counts(recorder, None, [6] * 3)


def test_executor_map_reports_progress(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        recorder = h.Recorder()
        assert list(ex.map(h.identity, range(10), chunksize=4, progress=recorder)) == list(
            range(10)
        )
        check_counts(recorder, 10, [4, 4, 2])
        recorder = h.Recorder()
        result = list(ex.map(h.plus, range(10), range(10), chunksize=3, progress=recorder))
        assert result == [2 * x for x in range(10)]
        check_counts(recorder, 10, [3, 3, 3, 1])
        recorder = h.Recorder()
        result = list(ex.map(h.identity, range(10), chunksize=4, buffersize=1, progress=recorder))
        assert result == list(range(10))
        check_counts(recorder, 10, [4, 4, 2])


def test_a_tqdm_like_object_is_updated_and_given_its_total(ctx):
    with ctx.Pool(2) as p:
        bar = h.FakeBar()
        assert p.map(h.identity, range(100), chunksize=10, progress=bar) == list(range(100))
        assert bar.total == 100 and bar.n == 100 and all(n > 0 for n in bar.updates)
        assert not bar.closed  # the caller's bar: not ours to close
        # A total it has already is kept.
        bar = h.FakeBar(total=1000)
        list(p.imap_unordered(h.identity, range(50), progress=bar))
        assert bar.total == 1000 and bar.n == 50
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        bar = h.FakeBar()
        assert list(ex.map(h.identity, range(30), chunksize=7, progress=bar)) == list(range(30))
        assert bar.total == 30 and bar.n == 30


def test_progress_true_shows_a_tqdm_bar_closed_at_the_end(ctx, capsys):
    import tqdm  # noqa: F401 - in the test extra; progress=True needs it

    with ctx.Pool(2) as p:
        assert p.map(h.identity, range(100), chunksize=10, progress=True) == list(range(100))
        err = capsys.readouterr().err
        assert "map(identity)" in err and "100/100" in err
        with pytest.raises(ValueError):
            p.map(h.square, range(40), chunksize=5, progress=True)
        assert "40/40" in capsys.readouterr().err
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(h.identity, range(30), chunksize=7, progress=True)) == list(range(30))
        assert "30/30" in capsys.readouterr().err


def test_our_bar_is_closed_when_the_call_ends(ctx, monkeypatch):
    from multiprocess.pool import _progress

    bars = []

    def fake_tqdm():
        def make(total=None, desc=None):
            bars.append(h.FakeBar(total, desc))
            return bars[-1]

        return make

    monkeypatch.setattr(_progress, "_tqdm", fake_tqdm)
    event = ctx.Event()
    p = ctx.Pool(2, initializer=h.init_event, initargs=(event,))
    try:
        p.map(h.identity, range(20), progress=True)
        with pytest.raises(ValueError):
            p.map(h.square, range(20), chunksize=3, progress=True)
        assert [(b.total, b.n, b.closed) for b in bars] == [(20, 20, True), (20, 20, True)]
        assert bars[0].desc == "map(identity)"
        pending = p.map_async(h.wait_for_event, range(4), chunksize=1, progress=True)
        it = p.imap(h.wait_for_event, range(4), progress=True)
        assert not bars[2].closed and not bars[3].closed
    finally:
        p.terminate()
    with pytest.raises(mpool.PoolTerminatedError):
        pending.get(60)
    with pytest.raises(mpool.PoolTerminatedError):
        list(it)
    assert bars[2].closed and bars[3].closed


def test_progress_true_without_tqdm_raises_import_error_naming_the_extra(ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with ctx.Pool(2) as p:
        for call in (
            lambda: p.map(h.identity, range(10), progress=True),
            lambda: p.imap(h.identity, range(10), progress=True),
            lambda: p.starmap_async(h.plus, [(1, 2)], progress=True),
        ):
            with pytest.raises(ImportError, match=r"pip install multiprocess\[progress\]"):
                call()
        assert not p._cache  # no call was left behind
        assert p.map(h.identity, range(3)) == [0, 1, 2]
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        with pytest.raises(ImportError, match=r"multiprocess\[progress\]"):
            ex.map(h.identity, range(10), progress=True)
        assert list(ex.map(h.identity, range(3))) == [0, 1, 2]


@pytest.mark.parametrize("bad", [5, 1.0, "yes", object()])
def test_a_bad_progress_value_is_a_type_error_at_the_call(ctx, bad):
    with ctx.Pool(1) as p:
        for call in (
            lambda: p.map(h.identity, range(3), progress=bad),
            lambda: p.map_async(h.identity, range(3), progress=bad),
            lambda: p.starmap(h.plus, [(1, 2)], progress=bad),
            lambda: p.imap(h.identity, range(3), progress=bad),
            lambda: p.imap_unordered(h.identity, range(3), chunksize=2, progress=bad),
        ):
            with pytest.raises(TypeError, match=r"progress must be True .* not "):
                call()
        assert not p._cache
        assert p.map(h.identity, range(3), progress=False) == [0, 1, 2]
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        with pytest.raises(TypeError, match="progress must be"):
            ex.map(h.identity, range(3), progress=bad)
        with pytest.raises(TypeError, match="progress must be"):
            ex.map(h.identity, range(3), buffersize=2, progress=bad)
        assert list(ex.map(h.identity, range(3))) == [0, 1, 2]


def test_a_progress_callable_that_raises_does_not_break_the_pool(ctx):
    calls = []

    def broken(done, total):
        calls.append(done)
        raise RuntimeError("progress display is gone")

    with ctx.Pool(2) as p:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert p.map(h.identity, range(40), chunksize=5, progress=broken) == list(range(40))
            assert list(p.imap(h.identity, range(10), progress=broken)) == list(range(10))
        assert len(calls) == 2  # once per call, then no more
        messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
        assert len(messages) == 2
        assert "progress display is gone" in messages[0] and "broken" in messages[0]
        assert p.map(h.identity, range(3)) == [0, 1, 2]


def test_thread_pool_counts_from_its_threads_in_order():
    # The worker threads end tasks concurrently: the counts still rise one by one.
    with mpool.ThreadPool(4) as p:
        for _ in range(20):
            recorder = h.Recorder()
            list(p.imap_unordered(h.identity, range(500), progress=recorder))
            check_counts(recorder, 500, [1] * 500)
        recorder = h.Recorder()
        assert p.map(h.identity, range(100), chunksize=25, progress=recorder) == list(range(100))
        check_counts(recorder, 100, [25] * 4)


def test_an_empty_map_with_progress(ctx):
    with ctx.Pool(1) as p:
        bar = h.FakeBar()
        assert p.map(h.identity, [], progress=bar) == []
        assert list(p.imap(h.identity, [], progress=bar)) == []
        assert bar.n == 0
