"""``coverage --service cbr``: the estate read through CBR's ``GET /v3/{project}/backups``
(each backup with its ``replication_records``), judged per resource and destination region as
for CSBS; CBR ledgers (``backup_id``) explain the gaps; replicas (``image_type``
``replication``) are not resources; ``schedule --coverage`` for a CBR discovery."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.nightly import run_schedule
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.coverage_input import ledger_facts, observe
from orchestrator.scheduling.missed import MissedRunPolicy
from orchestrator.simulator.cbr import LIST_BACKUPS
from orchestrator.simulator.cbr import REPLICATE as CBR_REPLICATE
from orchestrator.simulator.cbr_views import vault_id
from tests.cli.test_nightly import JumpingClock, connection, estate_config, utc
from tests.conftest import MakeSimulator
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread
from tests.insight.test_coverage import _argv

H = 3600.0


def _coverage(sim: Any, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "coverage.json"
    code = main(_argv(sim, "--service", "cbr", "--format", "json", "-o", str(out), *extra))
    return code, json.loads(out.read_text())


def test_cbr_coverage_of_an_aged_estate_shows_every_state_from_the_cbr_listing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with simulator_thread(items=700, age_days=7, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        code, doc = _coverage(sim, tmp_path)
        cbr_listings = sim.counters.requests_for(LIST_BACKUPS, 200)
        csbs_code, csbs_doc = _coverage_csbs(sim, tmp_path)
    assert code == 3
    assert cbr_listings > 0, "the CBR face was not asked"
    rows = doc["rows"]
    assert len(rows) == 2 * 100  # 700 backups / 7 days = 100 resources, two regions
    assert {r["state"] for r in rows} == {"covered", "stale", "missing", "failing", "running"}
    for row in rows:
        if row["state"] == "covered":
            assert row["lag_s"] <= 26 * H
        if row["state"] == "stale":
            assert row["lag_s"] > 26 * H
        if row["state"] == "missing":
            assert row["lag_s"] is None
    failing = [r for r in rows if r["state"] == "failing"]
    assert any("BackupService.9999" in r["reason"] for r in failing)
    # The same estate read through CSBS judges every cell the same way.
    assert csbs_code == code
    key = ("resource_id", "destination_region", "state", "copied_backup_id", "lag_s")
    assert sorted(tuple(r[k] for k in key) for r in rows) == sorted(
        tuple(r[k] for k in key) for r in csbs_doc["rows"]
    )


def _coverage_csbs(sim: Any, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "coverage-csbs.json"
    code = main(_argv(sim, "--format", "json", "-o", str(out)))
    return code, json.loads(out.read_text())


def test_cbr_coverage_reads_a_cbr_discovery_config_with_vaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The config `discover --service cbr` uses (vaults per region and per rule) serves
    coverage as it is; coverage itself needs no vault."""
    with simulator_thread(items=140, age_days=7, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        project = sim.state.projects[0]
        east2 = sim.state.destination_projects["cn-east-2"]
        south1 = sim.state.destination_projects["cn-south-1"]
        south1_vault = vault_id(south1, "cn-south-1")
        config = tmp_path / "cbr.toml"
        config.write_text(
            f"""
[connection]
service = "cbr"

[discover.cbr]
destination_vaults = {{ "cn-east-2" = "{vault_id(east2, "cn-east-2")}" }}

[[discover.sources]]
project_id = "{project.id}"
region = "{project.region}"

[[discover.rules]]
to = [
  {{ region = "cn-east-2", project_id = "{east2}" }},
  {{ region = "cn-south-1", project_id = "{south1}", vault_id = "{south1_vault}" }},
]
""",
            encoding="utf-8",
        )
        out = tmp_path / "coverage.json"
        at = datetime.fromtimestamp(sim.state.now(), UTC).isoformat()
        code = main(
            [
                "coverage",
                "--endpoint",
                sim.base_url,
                "--config",
                str(config),
                "--rpo",
                "26h",
                "--at",
                at,
                "--format",
                "json",
                "-o",
                str(out),
                "--log-level",
                "warning",
            ]
        )
        cbr_listings = sim.counters.requests_for(LIST_BACKUPS, 200)
    assert code == 3, "an aged estate has gaps"
    assert cbr_listings > 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["destination_region"] for r in rows} == {"cn-east-2", "cn-south-1"}
    assert len(rows) == 2 * 20


def test_a_cbr_ledger_explains_a_gap_by_backup_id() -> None:
    backup = "00000000-0000-4000-8000-000000000001"
    line = {
        "v": 1,
        "event": "result",
        "ts": "2026-12-02T02:00:00+00:00",
        "backup_id": backup,
        "destination_region": "cn-east-2",
        "destination_vault_id": "4268e394-d499-54fc-9360-0fc66ac73e0c",
        "status": "gave_up",
        "http_status": 503,
        "attempts": 8,
        "finished_at": "2026-12-02T02:00:00+00:00",
    }
    facts = ledger_facts([line])
    assert facts[backup, "cn-east-2"].reason == "gave up: 503 x8 on 2026-12-02"


def test_a_cbr_replica_is_not_a_resource() -> None:
    backup: dict[str, Any] = {
        "id": "00000000-0000-4000-8000-000000000002",
        "resource_id": "server-1",
        "status": "available",
        "created_at": "2026-12-02T01:00:00",
        "image_type": "replication",
        "extend_info": None,
        "replication_records": [],
    }

    def seen(item: dict[str, Any]) -> object:
        return observe(item, project_id="p" * 32, source_region="cn-north-1", targets=["cn-east-2"])

    assert seen(backup) is None
    assert seen(dict(backup, image_type="backup")) is not None


@pytest.mark.anyio
async def test_schedule_coverage_of_a_cbr_discovery(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    metrics = tmp_path / "nightly.prom"
    clock = JumpingClock(utc("2026-03-28 14:07:31"), state_dir)
    options = ScheduleOptions(
        None, None, state_dir, 14, MissedRunPolicy(), once=True, coverage_rpo_s=26 * H
    )
    async with make_simulator(items=140, age_days=7) as sim:
        conn = connection(sim)
        settings = conn.settings.with_values(metrics_file=str(metrics), service="cbr")
        conn = replace(conn, settings=settings)
        base = estate_config(sim)
        vaults = {
            region: vault_id(project, region)
            for region, project in sim.state.destination_projects.items()
        }
        config = replace(base, service="cbr", vaults=vaults)
        out = io.StringIO()
        code = await run_schedule(
            conn, lambda _: config, options, out=out, clock=clock, handle_signals=False
        )
        cbr_listings = sim.counters.requests_for(LIST_BACKUPS, 200)
        cbr_copies = sim.counters.requests_for(CBR_REPLICATE, 200)
    assert code == ExitCode.OK
    assert cbr_listings > 0, "the firing did not list CBR backups"
    assert cbr_copies > 0, "the firing did not replicate through CBR"
    text = out.getvalue()
    assert text.index("firing ") < text.index("worst lag")
    gauges = metrics.read_text()
    assert 'csbs_orchestrator_coverage_resources{destination_region="cn-south-1"' in gauges
