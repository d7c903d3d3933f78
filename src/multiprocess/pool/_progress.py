"""Progress of a map: the ``progress=`` keyword of the pools' and the executor's maps (layer 5).

``progress=`` takes:

- ``True``: a tqdm bar (``tqdm.auto``, so a notebook gets its widget), made
  for the call and closed when it ends.  tqdm is the optional extra
  ``multiprocess[progress]``; without it, the call raises ImportError.
- a tqdm-compatible object (anything with an ``update(n)`` method): it is
  updated by the number of items done; its ``total`` is set if it has none
  and the inputs have a ``len()``.  It is not closed: it is the caller's.
- a callable: called as ``progress(done, total)`` (``total`` is None when the
  inputs have no ``len()``).
- ``None`` or ``False``: no progress (the default).

It counts items, not chunks: a 100-item map in chunks of 25 reports 25, 50,
75, 100.  An item counts once its chunk's result (or error) is back.  The
updates come from the pool's thread that handles results (in a
``ThreadPool``, from its worker threads, one at a time), so they must be
quick; a bar's updates are batched (at most one ``update()`` each
``_BAR_INTERVAL`` seconds, and one at the end).  An exception raised by the
callable or the bar is reported once as a ``RuntimeWarning``, and the call
goes on without progress.  With ``progress`` unused nothing of this runs:
the results only test that their ``_progress`` is None.
"""

from __future__ import annotations

import importlib
import threading
import time
import warnings
from collections.abc import Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Protocol, Union
else:
    from .._generics import Protocol

from ._exceptions import _callable_name, _short_repr
from ._wire import _ONE


class SupportsUpdate(Protocol):
    """A tqdm-compatible progress bar: what ``progress=`` needs of one."""

    def update(self, n: int = 1) -> Any: ...


# ``progress(done, total)``: items done so far, and their number (None if unknown).
# What ``progress=`` accepts (see the module docstring).
if TYPE_CHECKING:
    ProgressCallback = Callable[[int, Optional[int]], object]
    ProgressArg = Union[bool, SupportsUpdate, ProgressCallback, None]
else:  # the same, as text, for documentation tools (typing is not imported at run time)
    ProgressCallback = "Callable[[int, int | None], object]"
    ProgressArg = "bool | SupportsUpdate | ProgressCallback | None"

# A bar is updated at most this often (tqdm redraws at most every 0.1 s anyway).
_BAR_INTERVAL = 0.1

_INSTALL_HINT = "pip install multiprocess[progress]"


def _tqdm() -> Any:
    try:
        module = importlib.import_module("tqdm.auto")
    except ImportError as e:
        raise ImportError(
            f"progress=True shows a tqdm progress bar, and tqdm is not installed: "
            f"`{_INSTALL_HINT}` (or `pip install tqdm`), or pass a callable "
            f"progress(done, total) instead"
        ) from e
    return module.tqdm


def total_of(iterable: Any) -> int | None:
    """``len(iterable)`` if it has one, else None."""
    try:
        return len(iterable)
    except Exception:  # noqa: BLE001 - no usable len(): the total is unknown
        return None


def start(
    progress: Any, *, total: int | None, kind: int, chunksize: int, desc: str
) -> _Progress | None:
    """The progress of one call, or None for ``progress=None``/``False``.

    Raises:
        TypeError: ``progress`` is none of the accepted values.
        ImportError: ``progress=True`` and tqdm is not installed.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        bar = _tqdm()(total=total, desc=desc)
        return _BarProgress(bar, total, kind, chunksize, owned=True)
    if callable(getattr(progress, "update", None)):
        return _BarProgress(progress, total, kind, chunksize, owned=False)
    if callable(progress):
        return _CallableProgress(progress, total, kind, chunksize)
    raise TypeError(
        f"progress must be True (a tqdm bar), a tqdm-like object with an update(n) "
        f"method, a callable progress(done, total), or None, not "
        f"{type(progress).__name__} ({_short_repr(progress)})"
    )


class _Progress:
    """Counts the items of one call as its tasks end; see the module docstring."""

    def __init__(self, total: int | None, kind: int, chunksize: int) -> None:
        self.total = total
        self.kind = kind
        self.chunksize = max(chunksize, 1)
        self.drawn = 0  # items drawn so far (see counting), when the total is unknown
        self.done = 0
        self.closed = False
        self._lock = threading.Lock()

    def counting(self, chunks: Iterator[tuple]) -> Iterator[tuple]:
        """``chunks``, counting their items as they are drawn (the last chunk may be short)."""
        for chunk in chunks:
            self.drawn += len(chunk)
            yield chunk

    def _items_in(self, index: int) -> int:
        """How many items task ``index`` (a chunk) has."""
        known = self.total if self.total is not None else self.drawn
        return max(0, min(self.chunksize, known - index * self.chunksize))

    def task_done(self, index: int, outcome: tuple[bool, Any]) -> None:
        """Task ``index`` ended with ``outcome`` (``(ok, value)``): count its items."""
        if self.kind == _ONE:
            n = 1
        else:
            ok, value = outcome
            n = len(value) if ok and type(value) is list else self._items_in(index)
            if not n:
                return
        self.add(n)

    def add(self, n: int) -> None:
        """``n`` more items are done."""
        with self._lock:
            if self.closed:
                return
            self.done += n
            try:
                self._report()
            except Exception as e:  # noqa: BLE001 - progress must not break the pool
                self._failed(e)

    def close(self) -> None:
        """The call ended (all done, failed, terminated or cancelled): report the rest."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._finish()
            except Exception as e:  # noqa: BLE001 - progress must not break the pool
                self._failed(e)

    def _report(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    def _failed(self, exc: BaseException) -> None:
        # Called with the lock held; no more reports for this call.
        self.closed = True
        warnings.warn(
            f"progress reporting for this call stopped: {self._what()} raised "
            f"{type(exc).__name__}: {exc} (the call itself goes on)",
            RuntimeWarning,
            stacklevel=2,
        )

    def _what(self) -> str:
        raise NotImplementedError


class _CallableProgress(_Progress):
    def __init__(
        self, func: ProgressCallback, total: int | None, kind: int, chunksize: int
    ) -> None:
        super().__init__(total, kind, chunksize)
        self.func = func

    def _report(self) -> None:
        self.func(self.done, self.total)

    def _what(self) -> str:
        return f"the progress callable {_callable_name(self.func)}"


class _BarProgress(_Progress):
    def __init__(self, bar: Any, total: int | None, kind: int, chunksize: int, owned: bool) -> None:
        super().__init__(total, kind, chunksize)
        self.bar = bar
        self.owned = owned  # made by us (progress=True): closed at the end
        self.shown = 0  # of self.done, passed to bar.update()
        self.next_update = time.monotonic() + _BAR_INTERVAL
        if total is not None and getattr(bar, "total", None) is None:
            try:
                bar.total = total
                refresh = getattr(bar, "refresh", None)
                if callable(refresh):
                    refresh()
            except Exception:  # noqa: BLE001, S110 - a bar without a settable total still counts
                pass

    def _report(self) -> None:
        if time.monotonic() >= self.next_update:
            self.next_update = time.monotonic() + _BAR_INTERVAL
            self._flush()

    def _flush(self) -> None:
        n, self.shown = self.done - self.shown, self.done
        if n:
            self.bar.update(n)

    def _finish(self) -> None:
        try:
            self._flush()
        finally:
            if self.owned:
                self.bar.close()

    def _what(self) -> str:
        return f"the progress bar {_short_repr(self.bar)}"
