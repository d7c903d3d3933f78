"""Errors that name the item: an exception raised for one item of a map carries a note.

The note (``add_note`` on 3.11+, the message and ``__notes__`` before) says
which function, which item of the whole call (its own index, also inside a
chunk) and a short repr of it; the exception keeps its type and the worker's
traceback as ``__cause__``.  Under fork, spawn and forkserver, on Pool,
ThreadPool and ProcessPoolExecutor.
"""

from __future__ import annotations

import pickle
import sys

import _item_helpers as h
import pytest

from multiprocess import pool as mpool
from multiprocess.futures import ProcessPoolExecutor

pytestmark = pytest.mark.timeout(120)


def notes_of(exc):
    return list(getattr(exc, "__notes__", []))


def shows(exc, note):
    """The note is where a user sees it: in __notes__, and before 3.11 in str() when
    the message is one string that str() shows as it is (not KeyError's repr)."""
    assert note in notes_of(exc), (notes_of(exc), note)
    if sys.version_info < (3, 11) and not isinstance(exc, KeyError):
        assert note in str(exc)


def check_worker_error(exc, note, message):
    assert type(exc) is ValueError
    assert message in str(exc)
    cause = exc.__cause__
    assert isinstance(cause, mpool.RemoteTraceback)
    assert f"ValueError: {message}" in cause.tb
    shows(exc, note)
    assert len(notes_of(exc)) == 1


def pool_calls(p, func, items, chunksize, **kw):
    """Each map-like call of ``p`` on ``items``, as (api, a thunk that runs it to the end)."""
    pairs = [(x, 1) for x in items]
    return [
        ("map", lambda: p.map(func, items, chunksize, **kw)),
        ("map_async", lambda: p.map_async(func, items, chunksize, **kw).get(60)),
        ("imap", lambda: list(p.imap(func, items, chunksize, **kw))),
        ("imap_unordered", lambda: list(p.imap_unordered(func, items, chunksize, **kw))),
        ("starmap", lambda: p.starmap(h.add, pairs, chunksize, **kw)),
        ("starmap_async", lambda: p.starmap_async(h.add, pairs, chunksize, **kw).get(60)),
    ]


@pytest.mark.parametrize("chunksize", [1, 5, 7])
def test_each_map_names_the_item_inside_its_chunk(ctx, chunksize):
    items = list(range(40))
    with ctx.Pool(2) as p:
        for api, run in pool_calls(p, h.square, items, chunksize):
            if api.startswith("starmap"):
                with pytest.raises(KeyError) as info:
                    run()
                exc = info.value
                assert isinstance(exc.__cause__, mpool.RemoteTraceback)
                shows(exc, f"in add(item 13 of {api}: (13, 1))")
                continue
            with pytest.raises(ValueError) as info:
                run()
            check_worker_error(info.value, f"in square(item 17 of {api}: 17)", "cannot square 17")
        # Nothing else broke.
        assert p.map(h.square, range(5), 2) == [0, 1, 4, 9, 16]


def test_the_note_shows_a_short_repr_of_the_item(ctx):
    with ctx.Pool(2) as p:
        with pytest.raises(ValueError) as info:
            p.map(h.square, ["x", "y", "z", "abc", "w"], chunksize=2)
        check_worker_error(info.value, "in square(item 3 of map: 'abc')", "cannot square 'abc'")
        with pytest.raises(ValueError) as info:
            p.map(h.fail_long, [["long"] * 1000], chunksize=1)
        (note,) = notes_of(info.value)
        assert note.startswith("in fail_long(item 0 of map: ['long', 'long',")
        assert len(note) < 150


def test_imap_goes_on_after_a_noted_error(ctx):
    with ctx.Pool(2) as p:
        it = p.imap(h.square, [1, 17, 3, "abc", 5])
        assert next(it) == 1
        with pytest.raises(ValueError) as info:
            next(it)
        shows(info.value, "in square(item 1 of imap: 17)")
        assert next(it) == 9
        with pytest.raises(ValueError) as info:
            next(it)
        shows(info.value, "in square(item 3 of imap: 'abc')")
        assert next(it) == 25


def test_an_exception_with_other_args_keeps_them_and_still_pickles(ctx):
    with ctx.Pool(2) as p, pytest.raises(h.ArgsError) as info:
        p.map(h.raise_args_error, range(10), chunksize=3)
    exc = info.value
    assert exc.args == (5, "two")
    assert notes_of(exc) == ["in raise_args_error(item 5 of map: 5)"]
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is h.ArgsError and again.args == (5, "two")


def test_apply_and_pool_faults_get_no_item_note(ctx):
    with ctx.Pool(1) as p:
        with pytest.raises(ValueError) as info:
            p.apply(h.square, (17,))
        assert notes_of(info.value) == []
        assert isinstance(info.value.__cause__, mpool.RemoteTraceback)


@pytest.mark.parametrize("chunksize", [1, 6])
def test_executor_map_names_the_item(ctx, chunksize):
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        results = ex.map(h.square, range(40), chunksize=chunksize)
        good = 17 // chunksize * chunksize  # the items of the chunks before the failing one
        assert [next(results) for _ in range(good)] == [x * x for x in range(good)]
        with pytest.raises(ValueError) as info:
            next(results)
        check_worker_error(info.value, "in square(item 17 of map: 17)", "cannot square 17")
        with pytest.raises(KeyError) as info:
            list(ex.map(h.add, range(20), range(20, 40), chunksize=chunksize))
        shows(info.value, "in add(item 13 of map: (13, 33))")
        with pytest.raises(ValueError) as info:
            ex.submit(h.square, 17).result(60)
        assert notes_of(info.value) == []


def test_thread_pool_names_the_item():
    with mpool.ThreadPool(3) as p:
        with pytest.raises(ValueError) as info:
            p.map(h.square, range(40), chunksize=5)
        shows(info.value, "in square(item 17 of map: 17)")
        with pytest.raises(ValueError) as info:
            list(p.imap_unordered(h.square, range(40), chunksize=3))
        shows(info.value, "in square(item 17 of imap_unordered: 17)")
        with pytest.raises(KeyError) as info:
            p.starmap(h.add, [(x, 0) for x in range(20)], chunksize=3)
        shows(info.value, "in add(item 13 of starmap: (13, 0))")
        assert p.map(h.square, range(3)) == [0, 1, 4]


@pytest.mark.parametrize(
    "exc, text",
    [
        (ValueError("bad"), "bad\nin f(item 3 of map: 'x')"),
        (RuntimeError(), ""),
        (KeyError("k"), "'k'"),
        (OSError(2, "No such file"), "[Errno 2] No such file"),
        (h.ArgsError(1, 2), "(1, 2)"),
    ],
)
def test_the_note_before_3_11_is_in_the_message_only_when_safe(exc, text):
    # The fallback of Pythons without add_note, run on every version.
    from multiprocess.pool import _notes

    args = exc.args
    _notes._append_note(exc, "in f(item 3 of map: 'x')")
    assert exc.__notes__ == ["in f(item 3 of map: 'x')"]
    assert str(exc) == text
    if text != "bad\nin f(item 3 of map: 'x')":
        assert exc.args == args
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is type(exc) and str(again) == text


def test_the_note_names_the_item_when_the_worker_records_it(ctx):
    # With a task_timeout, a worker records each item it starts (see
    # pool._record): the note then comes from the record, not the iterator.
    with ctx.Pool(2) as p:
        for api, run in pool_calls(p, h.square, list(range(40)), 7, task_timeout=60):
            if api.startswith("starmap"):
                with pytest.raises(KeyError) as info:
                    run()
                shows(info.value, f"in add(item 13 of {api}: (13, 1))")
                continue
            with pytest.raises(ValueError) as info:
                run()
            check_worker_error(info.value, f"in square(item 17 of {api}: 17)", "cannot square 17")


@pytest.mark.parametrize("task_timeout", [None, 60], ids=["untracked", "tracked"])
def test_the_note_names_the_item_of_a_chunk_re_run_after_a_death(ctx, task_timeout):
    # Item 2 kills its worker: the chunk's other items run again as a new
    # task (or one task each), where item 5 raises: its note has its own index.
    with ctx.Pool(2) as p:
        with pytest.raises(ValueError) as info:
            p.map(h.die_or_raise, range(8), chunksize=8, task_timeout=task_timeout)
        shows(info.value, "in die_or_raise(item 5 of map: 5)")
        assert p.map(h.square, range(5), 2) == [0, 1, 4, 9, 16]
