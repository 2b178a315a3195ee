"""One thread of our own that runs blocking calls in order, each awaited from the event loop.

The ledger hands every batch commit (``os.write`` + ``fsync``) to a thread. With
``anyio.to_thread.run_sync`` a hand-off cost ~110 us of CPU (a capacity limiter, a cancel
scope and a worker-thread queue built on ``threading.Condition``); here it costs ~40 us: a
``queue.SimpleQueue`` in, ``call_soon_threadsafe`` out. In the latency-bound benchmark the
event loop is saturated and the ledger commits ~1,500 times, so the difference is CPU the
requests get back. One thread also keeps the calls in submission order without a limiter.

A call cannot be interrupted once started. A cancelled awaiter waits for it to end (then
the cancellation goes on), unless it asked to abandon the call: then the call still runs to
the end and its outcome is dropped (the ledger abandons only its final commit, on a deadline,
and counts that as a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["SerialThread"]

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", Callable[[], None]]


class SerialThread:
    """``async with SerialThread(name) as thread: await thread.run(fn)``; asyncio only.

    Leaving the context lets queued calls finish but does not wait for them: a call that
    hangs (an fsync on a dying disk) must not hang the exit, so the thread is a daemon.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    async def __aenter__(self) -> Self:
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._jobs.put(None)

    async def run(self, call: Callable[[], None], *, abandon_on_cancel: bool = False) -> None:
        """Run ``call()`` in the thread after every call submitted before it; re-raise what
        it raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._jobs.put((loop, done, call))
        if abandon_on_cancel:
            await done
            return
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            await _until_done(done)
            raise

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, done, call = job
            error: BaseException | None = None
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiter, not lost
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, done, error)


async def _until_done(done: asyncio.Future[None]) -> None:
    """Wait for ``done`` through any number of cancellations (the caller re-raises one)."""
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            continue
        except BaseException:  # noqa: BLE001 - the call's own error: it ended
            return


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the awaiter was cancelled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
