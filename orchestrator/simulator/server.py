"""The :class:`Simulator` resource (an async context manager serving on loopback) and
:func:`serve`, which runs one until SIGINT/SIGTERM for the CLI."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TextIO

import orjson
from aiohttp import web

from orchestrator.simulator.app import SimulatorApp
from orchestrator.simulator.auth import Authenticator
from orchestrator.simulator.clock import AdvancingClock, Clock, ScaledClock
from orchestrator.simulator.config import FaultConfig, SimulatorConfig
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.faults import FaultInjector
from orchestrator.simulator.state import Estate

__all__ = ["Simulator", "serve"]


class Simulator:
    """A simulated CSBS: one shared URL serving every source region of its estate, and each
    source region at its own endpoint, as the real service has them.

    ``async with Simulator(config) as sim:`` starts it on ``host:port`` (port 0 picks a free
    one) in the running event loop; ``sim.base_url`` serves every region,
    ``sim.region_urls[region]`` only that one (its own port: capabilities for that region,
    items shaped as the real ones). A simulator runs once: it cannot be restarted after it is
    closed.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.clock = AdvancingClock(clock or ScaledClock(self.config.time_scale))
        self.state = Estate(self.config, self.clock)
        self.counters = Counters(monotonic)
        self.auth = Authenticator(self.config, self.state, self.clock, wall=wall)
        self._faults = FaultInjector(self.config.faults, self.config.seed, monotonic=monotonic)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._used = False
        # Serve HTTPS with this context (tests of --ca-file and certificate checks).
        self._ssl = ssl_context
        self._region_ports: dict[int, str] = {}

    @property
    def faults(self) -> FaultConfig:
        return self._faults.config

    def update_faults(self, **changes: Any) -> FaultConfig:
        """Change fault knobs at run time (as ``POST /_sim/faults`` does)."""
        return self._faults.update(changes)

    def advance(self, seconds: float) -> float:
        """Move simulated time forward; returns the new simulated now."""
        self.clock.advance(seconds)
        return self.clock.now()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def region_urls(self) -> dict[str, str]:
        """Each source region's own endpoint."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return {
            region: f"http://{self._host}:{port}" for port, region in self._region_ports.items()
        }

    def info(self) -> dict[str, Any]:
        """The start-up document: where it listens, its estate and the credentials it takes."""
        config = self.config
        return {
            "event": "simulator.ready",
            "base_url": self.base_url,
            "endpoints": self.region_urls,
            "regions": list(config.regions),
            "projects": [{"id": p.id, "region": p.region} for p in self.state.projects],
            "destination_projects": self.state.destination_projects,
            "capabilities": self.state.capabilities(),
            "items": config.items,
            "seed": config.seed,
            "auth": config.auth,
            "ak": config.ak,
            "sk": config.sk,
            "user": config.user,
            "password": config.password,
            "domain": config.domain,
        }

    async def __aenter__(self) -> Self:
        if self._used:
            raise RuntimeError("a Simulator runs once; create a new one")
        self._used = True
        app = SimulatorApp(
            self.state,
            auth=self.auth,
            faults=self._faults,
            counters=self.counters,
            clock=self.clock,
            info=self.info,
            records_endpoint=self.config.records_endpoint,
            region_ports=self._region_ports,
            metadata_tokens=self.config.metadata_tokens != "off",
        ).build()
        # No access log: at thousands of requests per second it would cost more than serving.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024, ssl_context=self._ssl)
            await site.start()
            for region in self.config.regions:
                regional = web.TCPSite(runner, self._host, 0, backlog=1024)
                await regional.start()
                # The runner lists its sites' addresses in the order they started.
                self._region_ports[int(runner.addresses[-1][1])] = region
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


async def serve(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    out: TextIO,
) -> None:
    """Serve until SIGINT or SIGTERM; first write the :meth:`Simulator.info` line to ``out``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Simulator(config, host=host, port=port) as sim:
            info = sim.info()
            out.write(orjson.dumps(info).decode() + "\n")
            out.flush()
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
