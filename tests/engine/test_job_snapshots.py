"""How often a running job saves snapshots: never more than its duty cycle allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.settings import RunSettings
from orchestrator.engine.job_ledger import snapshots_meanwhile
from orchestrator.engine.job_spec import JobSpec
from orchestrator.ledger.history import History

pytestmark = pytest.mark.anyio


async def test_a_long_save_makes_the_next_one_wait_and_a_failure_ends_them(
    tmp_path: Path,
) -> None:
    spec = JobSpec(ledger=tmp_path / "l.jsonl", settings=RunSettings(), snapshot_check_s=10.0)
    waits: list[float] = []
    saves = iter([0.0, 2.0, 0.1, None, 0.0])  # not needed, a 2 s save, a short one, a failure

    async def keep(_: JobSpec, __: History) -> float | None:
        return next(saves)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    await snapshots_meanwhile(spec, History(), keep, sleep)

    assert waits == [10.0, 10.0, 100.0, 10.0]
    assert next(saves) == 0.0  # no check after the failure
