"""An embedded imitation of Huawei Cloud CSBS v1 (replication, listing, IAM tokens, AK/SK),
with seeded state, simulated time and fault injection, for tests, demos and benchmarks.

This package is the simulator's public face: the rest of the tool and the tests import
:class:`Simulator`, its config and clocks from here (the modules of this folder import
each other directly).

It imports only :mod:`orchestrator.models`, :mod:`orchestrator.errors` and
:mod:`orchestrator.signing` from the rest of the package, never the client side.

:class:`Simulator` and :func:`serve` (which need aiohttp) are imported on first use, so that
the CLI can build the ``simulate`` flags from :mod:`orchestrator.simulator.config` without
paying for aiohttp on every start (``--help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrator.simulator.clock import Clock, ManualClock, ScaledClock
from orchestrator.simulator.config import FaultConfig, SimulatorConfig
from orchestrator.simulator.counters import Counters

if TYPE_CHECKING:
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

_LAZY = {
    "Simulator": "orchestrator.simulator.server",
    "serve": "orchestrator.simulator.server",
    "Estate": "orchestrator.simulator.state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
