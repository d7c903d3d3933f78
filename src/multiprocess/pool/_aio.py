"""Awaiting a pool's results from asyncio without blocking the event loop (layer 5).

A result that is not ready yet is awaited on a future of the running loop.
The pool's thread that completes the result (the coordinator, or a worker
thread of a ``ThreadPool``) calls a waker, which hands the future's
resolution to the loop with ``call_soon_threadsafe``: no thread is held and
nothing polls while a task awaits.

``asyncio`` is imported here only when something is awaited: a program that
awaits has imported it already, and one that does not never pays for it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    Waker = Callable[[], None]


def _resolve(future: Any) -> None:
    if not future.done():  # a cancelled future is done
        future.set_result(None)


async def wait(
    add_waker: Callable[[Waker], None],
    remove_waker: Callable[[Waker], None],
    cancel: Callable[[], None],
) -> None:
    """Suspend the awaiting task until the waker given to ``add_waker`` is called.

    ``add_waker(wake)`` must call ``wake()`` once, from any thread, when
    there is news (at once if there already is).  If the awaiting task is
    cancelled meanwhile, the waker is removed, ``cancel()`` is called, and the
    cancellation goes on (``asyncio.CancelledError``).
    """
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits any more

    add_waker(wake)
    try:
        await future
    except asyncio.CancelledError:
        remove_waker(wake)
        cancel()
        raise
