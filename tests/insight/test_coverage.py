"""Coverage: the pure fold on fake time, the ledger's reasons, and the command against an aged
simulated estate over loopback."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.coverage import load_facts, parse_duration
from orchestrator.cli.main import main
from orchestrator.errors import ConfigError
from orchestrator.insight.coverage import CoverageFold, State
from orchestrator.insight.coverage_input import LedgerFact, ledger_facts, observe
from orchestrator.insight.coverage_render import metric_families, render_csv, render_table
from orchestrator.service.records import CopyState
from orchestrator.simulator.views import format_time
from tests.conftest import MakeSimulator
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

H = 3600.0
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()
RPO = 26 * H
PROJECT = "7d457b1297f4c725144e92e6f36ca20a"


def item(
    n: int,
    *,
    resource: str = "res-1",
    age_h: float,
    status: str = "available",
    records: list[dict[str, Any]] | None = None,
    **extend: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "resource_id": resource,
        "resource_name": f"ecs-{resource}",
        "status": status,
        "created_at": format_time(NOW - age_h * H),
        "extend_info": dict(extend),
    }
    if records is not None:
        out["replication_records"] = records
    return out


def rec(status: str, region: str = "cn-east-2", age_h: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "destination_region": region,
        "status": status,
        "created_at": format_time(NOW - age_h * H),
        "extra_info": extra,
    }


def judge(
    *items: dict[str, Any],
    facts: dict[tuple[str, str], LedgerFact] | None = None,
    targets: tuple[str, ...] = ("cn-east-2",),
) -> dict[tuple[str, str], Any]:
    fold = CoverageFold(facts)
    for raw in items:
        seen = observe(raw, project_id=PROJECT, source_region="cn-north-1", targets=targets)
        if seen is not None:
            fold.add(seen)
    coverage = fold.result(now=NOW, rpo_s=RPO)
    return {(r.resource_id, r.destination_region): r for r in coverage.rows}


@pytest.mark.parametrize(
    ("records", "extend", "state"),
    [
        # a record's status, as service/records.py reads it (the one reading of both)
        ([rec("waiting_replicate")], {}, CopyState.RUNNING),
        ([rec("replicating")], {}, CopyState.RUNNING),
        ([rec("fail")], {}, CopyState.FAILED),
        ([rec("skip")], {}, CopyState.SKIPPED),
        ([rec("something_new")], {}, CopyState.RUNNING),  # unknown: live, never missing
        # an item's extend_info.copy_status
        (None, {"copy_status": "waiting_copy"}, CopyState.RUNNING),
        (None, {"copy_status": "copying"}, CopyState.RUNNING),
        (None, {"copy_status": "success"}, CopyState.SUCCESS),
        (None, {"copy_status": "na"}, None),  # no copy
    ],
)
def test_both_vocabularies_are_read(
    records: list[dict[str, Any]] | None, extend: dict[str, Any], state: CopyState | None
) -> None:
    raw = item(1, age_h=3, records=records, **extend)
    seen = observe(raw, project_id=PROJECT, source_region="cn-north-1", targets=["cn-east-2"])
    assert seen is not None
    assert [c.state for c in seen.copies] == ([] if state is None else [state])


@pytest.mark.parametrize(
    ("records", "extend"),
    [
        ([rec("waiting_replicate")], {}),
        ([rec("replicating")], {}),
        ([rec("something_new")], {}),
        (None, {"copy_status": "waiting_copy"}),
        (None, {"copy_status": "copying"}),
    ],
)
def test_a_copy_waiting_or_copying_is_running(
    records: list[dict[str, Any]] | None, extend: dict[str, Any]
) -> None:
    rows = judge(
        item(1, age_h=3, records=records, **extend),
        item(2, age_h=75, records=[rec("success", age_h=74)]),
    )
    row = rows["res-1", "cn-east-2"]
    assert row.state is State.RUNNING
    assert row.reason.endswith("backup in progress")


def test_covered_when_the_newest_copy_is_within_the_rpo() -> None:
    rows = judge(
        item(1, age_h=3, records=[rec("success", age_h=2)]),
        item(2, age_h=27, records=[rec("success", age_h=26)]),
    )
    row = rows["res-1", "cn-east-2"]
    assert row.state is State.COVERED
    assert row.copied_backup_id == row.newest_backup_id
    assert row.lag_s == pytest.approx(3 * H)


def test_stale_when_the_only_copy_is_older_than_the_rpo() -> None:
    rows = judge(
        item(1, age_h=3),
        item(2, age_h=51, records=[rec("success", age_h=50)]),
    )
    row = rows["res-1", "cn-east-2"]
    assert row.state is State.STALE
    assert row.lag_s == pytest.approx(51 * H)
    assert "2d3h" in row.reason
    assert "not copied" in row.reason


def test_missing_never_copied_and_no_source_backup() -> None:
    rows = judge(
        item(1, age_h=3, records=[rec("success", region="cn-south-1")]),
        item(2, resource="res-2", age_h=3, status="error"),
    )
    assert rows["res-1", "cn-east-2"].state is State.MISSING
    assert rows["res-1", "cn-east-2"].reason == "never copied"
    assert rows["res-2", "cn-east-2"].state is State.MISSING
    assert "no available backup" in rows["res-2", "cn-east-2"].reason


def test_failing_takes_the_reason_of_the_record() -> None:
    rows = judge(
        item(1, age_h=3, records=[rec("fail", age_h=2, fail_code="CSBS.9999")]),
        item(2, age_h=75, records=[rec("success", age_h=74)]),
    )
    row = rows["res-1", "cn-east-2"]
    assert row.state is State.FAILING
    assert "CSBS.9999" in row.reason
    assert row.lag_s == pytest.approx(75 * H)


def test_running_beats_failing_and_stale() -> None:
    rows = judge(
        item(1, age_h=3, records=[rec("replicating", age_h=1)]),
        item(2, age_h=27, records=[rec("fail", age_h=26)]),
        item(3, age_h=51, records=[rec("success", age_h=50)]),
    )
    assert rows["res-1", "cn-east-2"].state is State.RUNNING


def test_an_old_failure_repaired_later_is_not_failing() -> None:
    rows = judge(
        item(1, age_h=3),
        item(2, age_h=51, records=[rec("fail", age_h=50), rec("success", age_h=40)]),
    )
    assert rows["res-1", "cn-east-2"].state is State.STALE


def test_copy_status_without_records_counts_for_a_single_destination_only() -> None:
    one = judge(item(1, age_h=3, copy_status="success"))
    assert one["res-1", "cn-east-2"].state is State.COVERED
    two = judge(item(1, age_h=3, copy_status="success"), targets=("cn-east-2", "cn-south-1"))
    assert {r.state for r in two.values()} == {State.MISSING}


def test_replicas_are_not_resources() -> None:
    assert judge(item(1, age_h=3, copy_from="cn-south-1")) == {}


def test_the_ledger_explains_a_gap() -> None:
    newest = item(1, age_h=3)
    lines = [
        {
            "event": "result",
            "checkpoint_item_id": newest["id"],
            "destination_region": "cn-east-2",
            "status": "gave_up",
            "http_status": 503,
            "attempts": 8,
            "finished_at": "2026-12-02T02:10:00+00:00",
        },
        {"event": "attempt", "checkpoint_item_id": newest["id"]},
    ]
    facts = ledger_facts(lines)
    rows = judge(newest, item(2, age_h=75, records=[rec("success", age_h=74)]), facts=facts)
    row = rows["res-1", "cn-east-2"]
    assert row.state is State.FAILING
    assert row.reason == "gave up: 503 x8 on 2026-12-02"


def test_a_later_success_in_the_ledger_replaces_the_failure() -> None:
    key = "00000000-0000-4000-8000-000000000001"
    base = {"event": "result", "checkpoint_item_id": key, "destination_region": "cn-east-2"}
    facts = ledger_facts(
        [
            {
                **base,
                "status": "failed",
                "error_code": "CSBS.4000",
                "finished_at": "2026-12-01T00:00:00Z",
            },
            {**base, "status": "replicated", "finished_at": "2026-12-02T00:00:00Z"},
        ]
    )
    assert not facts[key, "cn-east-2"].failed


def test_table_csv_and_metrics() -> None:
    fold = CoverageFold()
    for raw in (
        item(1, age_h=3, records=[rec("success")]),
        item(2, resource="=cmd|calc", age_h=3),
    ):
        seen = observe(raw, project_id=PROJECT, source_region="cn-north-1", targets=["cn-east-2"])
        assert seen is not None
        fold.add(seen)
    coverage = fold.result(now=NOW, rpo_s=RPO)
    table = render_table(coverage)
    assert "cn-east-2" in table
    assert "1 pairs not covered" in table
    rows = list(csv.DictReader(io.StringIO(render_csv(coverage))))
    assert {r["state"] for r in rows} == {"covered", "missing"}
    assert "'=cmd|calc" in {r["resource_id"] for r in rows}  # neutralised for spreadsheets
    covered_only = CoverageFold()
    seen = observe(
        item(3, age_h=3, records=[rec("success")]),
        project_id=PROJECT,
        source_region="cn-north-1",
        targets=["cn-east-2"],
    )
    assert seen is not None
    covered_only.add(seen)
    assert "every resource is covered" in render_table(covered_only.result(now=NOW, rpo_s=RPO))
    families = {name: samples for name, _, samples in metric_families(coverage)}
    states = {s[0]["state"]: s[1] for s in families["coverage_resources"]}
    assert states["covered"] == 1
    assert states["missing"] == 1
    assert states["stale"] == 0
    assert families["coverage_worst_lag_seconds"][0][1] == pytest.approx(3 * H)


@pytest.mark.parametrize(("text", "seconds"), [("26h", 26 * H), ("1d2h", 26 * H), ("90", 90.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0h", "-5"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--rpo"):
        parse_duration(text)


# --------------------------------------------------------------------------- the command


def _argv(sim: Any, *extra: str) -> list[str]:
    project = sim.state.projects[0]
    at = datetime.fromtimestamp(sim.state.now(), UTC).isoformat()
    return [
        "coverage",
        "--endpoint",
        sim.base_url,
        "--project-id",
        project.id,
        "--region",
        project.region,
        "--region-to",
        "cn-east-2",
        "--region-to",
        "cn-south-1",
        "--rpo",
        "26h",
        "--at",
        at,
        "--log-level",
        "warning",
        *extra,
    ]


def test_coverage_of_an_aged_estate_shows_every_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=700, age_days=7, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        out = tmp_path / "coverage.json"
        metrics = tmp_path / "coverage.prom"
        code = main(_argv(sim, "--format", "json", "-o", str(out), "--metrics-file", str(metrics)))
    assert code == 3
    doc = json.loads(out.read_text())
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
            assert row["copied_backup_id"] is None
    text = metrics.read_text()
    assert (
        'csbs_orchestrator_coverage_resources{destination_region="cn-east-2",state="covered"}'
        in text
    )
    assert "csbs_orchestrator_coverage_worst_lag_seconds" in text


def test_coverage_of_an_estate_with_nothing_protected_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=0, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        code = main(_argv(sim))
    assert code == 0
    assert "no protected resource" in capsys.readouterr().out


def test_coverage_names_a_missing_ledger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator_thread(items=0, regions=("cn-north-1",)) as sim:
        use_sim_credentials(monkeypatch, sim)
        code = main(_argv(sim, "--ledger", str(tmp_path / "nope.jsonl")))
    assert code == 2
    assert "nope.jsonl: no such ledger" in capsys.readouterr().err


def test_a_ledger_directory_stands_for_every_ledger_in_it(tmp_path: Path) -> None:
    key = "00000000-0000-4000-8000-000000000001"
    for night, status in (("01", "failed"), ("02", "gave_up")):
        line = {
            "v": 1,
            "event": "result",
            "ts": f"2026-12-{night}T02:00:00+00:00",
            "run_id": night,
            "checkpoint_item_id": key,
            "destination_region": "cn-east-2",
            "status": status,
            "http_status": 503,
            "attempts": 3,
            "finished_at": f"2026-12-{night}T02:00:00+00:00",
        }
        (tmp_path / f"ledger-202612{night}T0130Z.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "notes.txt").write_text("not a ledger")
    facts = load_facts([tmp_path])
    assert facts[key, "cn-east-2"].reason == "gave up: 503 x3 on 2026-12-02"


@pytest.mark.anyio
async def test_measure_reports_listing_progress(make_simulator: MakeSimulator) -> None:
    from orchestrator.cli.coverage import coverage_config, measure
    from orchestrator.config.settings import RunSettings
    from orchestrator.service.aksk import AkSkSigner
    from orchestrator.service.auth import Secret
    from orchestrator.service.connect import Connection

    async with make_simulator(items=1400, age_days=7, regions=("cn-north-1",)) as sim:
        project = sim.state.projects[0]
        settings = RunSettings.of(
            endpoint=sim.base_url, project_id=project.id, region=project.region
        )
        conn = Connection(settings, AkSkSigner(sim.config.ak, Secret(sim.config.sk)))
        config = coverage_config({}, settings, region_to=["cn-east-2"])
        seen: list[int] = []
        coverage = await measure(
            conn, config, {}, rpo_s=RPO, now=sim.state.now(), on_listed=lambda _, n: seen.append(n)
        )
    assert seen == [500, 1000]
    assert len(coverage.rows) == 200
