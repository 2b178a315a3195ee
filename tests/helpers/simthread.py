"""A simulator served from its own thread and event loop, for tests that call the CLI's
blocking ``main(argv)`` in this process (``main`` runs its own ``anyio.run``).

The simulator runs on a :class:`ManualClock`: its time moves only by ``sim.advance(s)``, which
a test may call between two commands (nothing is in flight then). Its counters can be read
directly. The environment for ``main``: :func:`tests.helpers.env.use_sim_credentials`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.simulator import Simulator

__all__ = ["simulator_thread"]


@contextmanager
def simulator_thread(**knobs: Any) -> Iterator[Simulator]:
    """``with simulator_thread(items=20) as sim:`` serves on loopback until the block ends."""
    from orchestrator.simulator import ManualClock, Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig.from_knobs(**knobs), clock=ManualClock())
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            async with sim:
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(30) or failure:
            raise AssertionError(f"the simulator did not start: {failure}")
        yield sim
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
