"""An embedded imitation of Huawei Cloud CSBS v1 (replication, listing, IAM tokens, AK/SK),
with seeded state, simulated time and fault injection, for tests, demos and benchmarks.

It imports only :mod:`orchestrator.models`, :mod:`orchestrator.errors` and
:mod:`orchestrator.signing` from the rest of the package, never the client side.
"""

from __future__ import annotations

from orchestrator.simulator.clock import Clock, ManualClock, ScaledClock
from orchestrator.simulator.config import FaultConfig, SimulatorConfig
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.server import Simulator, serve
from orchestrator.simulator.state import Estate

__all__ = [
    "Clock",
    "Counters",
    "Estate",
    "FaultConfig",
    "ManualClock",
    "ScaledClock",
    "Simulator",
    "SimulatorConfig",
    "serve",
]
