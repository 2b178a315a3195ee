"""Shared fixtures. Tests that use task groups run under anyio's plugin on asyncio."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from orchestrator.simulator import Clock, Simulator

# Property-based tests: a small profile keeps ``make test`` to seconds; CSBS_SLOW_TESTS=1
# searches much further. No example database: runs stay reproducible and leave no files.
settings.register_profile(
    "default",
    max_examples=25,
    stateful_step_count=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "slow",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("slow" if os.environ.get("CSBS_SLOW_TESTS") == "1" else "default")

#: ``make_simulator(clock=None, **knobs)``: any SimulatorConfig or FaultConfig knob by name.
MakeSimulator = Callable[..., "Simulator"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def no_real_credential_sources(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The credential chain's last links never leave the test: the ECS metadata service is a
    closed loopback port (never 169.254.169.254), the SDK profile file one that is absent.
    Subprocesses inherit both (``helpers.env.subprocess_env`` keeps them)."""
    monkeypatch.setenv("CSBS_METADATA_URL", f"http://127.0.0.1:{closed_port}/securitykey")
    absent = Path(tmp_path_factory.getbasetemp()) / "no-such-credentials-file"
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(absent))


@pytest.fixture
def make_simulator() -> MakeSimulator:
    """A factory of unstarted simulators on a :class:`ManualClock` (time moves only when a
    test says so); ``monotonic`` drives the throttling token buckets::

        async with make_simulator(items=50, p503=0.2) as sim:
            ...  # sim.base_url, sim.state, sim.counters, sim.advance(s), sim.update_faults()
    """
    from orchestrator.simulator import ManualClock, Simulator, SimulatorConfig

    def factory(
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        **knobs: Any,
    ) -> Simulator:
        config = SimulatorConfig.from_knobs(**knobs)
        return Simulator(config, clock=clock or ManualClock(), monotonic=monotonic)

    return factory
