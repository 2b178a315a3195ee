"""The environment a test runs the tool in: the simulator's key, nothing of the developer's.

One rule, for both ways a test runs the tool (a ``python -m orchestrator`` subprocess, or
``main(argv)`` in this process): every ``CSBS_*`` and ``HUAWEICLOUD_*`` variable of the outer
environment is left out, except the two with which ``conftest`` keeps the credential chain's
last links on loopback for every test, and the simulator's AK/SK are given.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from orchestrator.simulator import Simulator
    from tests.helpers.runkit import SimProcess

__all__ = ["subprocess_env", "use_sim_credentials"]

_OURS: Final = ("HUAWEICLOUD_", "CSBS_")
#: Set by conftest for every test (a closed loopback port, an absent file): always kept.
_KEPT: Final = frozenset({"CSBS_METADATA_URL", "HUAWEICLOUD_SDK_CREDENTIALS_FILE"})


def _left_out(name: str) -> bool:
    return name.startswith(_OURS) and name not in _KEPT


def _credentials(ak: str, sk: str) -> dict[str, str]:
    return {"HUAWEICLOUD_SDK_AK": ak, "HUAWEICLOUD_SDK_SK": sk}


def subprocess_env(sim: SimProcess, **extra: str) -> dict[str, str]:
    """The whole environment of a tool subprocess talking to ``sim`` (plus ``extra``)."""
    env = {name: value for name, value in os.environ.items() if not _left_out(name)}
    env.update(_credentials(sim.info["ak"], sim.info["sk"]), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def use_sim_credentials(monkeypatch: pytest.MonkeyPatch, sim: Simulator) -> None:
    """This process's environment, for ``main(argv)`` talking to ``sim`` (undone after the
    test by ``monkeypatch``)."""
    for name in [name for name in os.environ if _left_out(name)]:
        monkeypatch.delenv(name)
    for name, value in _credentials(sim.config.ak, sim.config.sk).items():
        monkeypatch.setenv(name, value)
