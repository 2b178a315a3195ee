"""``plan`` and ``run --dry-run``: the numbers per region against a known manifest and ledger,
the capability check per (source, destination) route, and that nothing is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.cli.planning import estimate_seconds
from orchestrator.config.settings import RunSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import CAPABILITIES, REPLICATE
from tests.helpers.env import use_sim_credentials
from tests.helpers.manifests import write_manifest
from tests.helpers.simthread import simulator_thread

COLUMNS = (
    "checkpoint_item_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=40, seed=3) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def _known_case(sim: Simulator, tmp_path: Path) -> tuple[Path, Path]:
    """A manifest with every kind of row, and a ledger that already knows two pairs."""
    project = next(p for p in sim.state.projects if p.region == "cn-north-1")
    items = [i.id for i in sim.state.items_of(project.id) if i.status == "available"][:7]
    dest = sim.state.destination_projects

    def row(item: str, region: str, source: str = "", dest_project: str = "") -> dict[str, str]:
        return {
            "checkpoint_item_id": item,
            "project_id": project.id,
            "source_region": source,
            "destination_region": region,
            "destination_project_id": dest_project or dest[region],
        }

    rows = [
        *(row(item, "cn-east-2") for item in items[:4]),  # item 0 is done already
        row(items[0], "cn-east-2"),  # a duplicate
        row(items[0], "cn-south-1"),
        row(items[1], "cn-south-1"),  # failed earlier
        row(items[4], "cn-east-2", dest_project="a" * 32),  # a conflict: two rows
        row(items[4], "cn-east-2", dest_project="b" * 32),
        row("not-a-uuid", "cn-east-2"),  # invalid
        row(items[5], "cn-north-4", source="cn-north-1"),  # cn-north-1 cannot copy there
        row(items[6], "cn-east-3", source="cn-north-1"),
    ]
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, rows, columns=COLUMNS)
    ledger = tmp_path / "ledger.jsonl"
    lines = [
        _result(project.id, items[0], "cn-east-2", "replicated"),
        _result(project.id, items[1], "cn-south-1", "failed"),
    ]
    ledger.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return manifest, ledger


def _result(project: str, item: str, region: str, status: str) -> dict[str, Any]:
    return {
        "v": 1,
        "event": "result",
        "ts": "2025-01-01T00:00:00.000000+00:00",
        "run_id": "earlier",
        "project_id": project,
        "checkpoint_item_id": item,
        "destination_region": region,
        "status": status,
        "attempts": 1,
    }


def _plan_json(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected_exit: int
) -> dict[str, Any]:
    assert main(argv) == expected_exit
    document: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return document


def _common(sim: Simulator, manifest: Path, ledger: Path) -> list[str]:
    return [
        "--manifest",
        str(manifest),
        "--ledger",
        str(ledger),
        "--endpoint",
        sim.base_url,
        "--region",
        "cn-north-1",
        "--log-format",
        "json",
    ]


def test_plan_json_counts_every_kind_of_row_and_sends_nothing(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = _known_case(sim, tmp_path)
    before = ledger.read_bytes()

    doc = _plan_json(capsys, ["plan", "--json", *_common(sim, manifest, ledger)], 3)

    regions = doc["regions"]
    assert {r: v["to_send"] for r, v in regions.items()} == {
        "cn-east-2": 3,
        "cn-east-3": 1,
        "cn-north-4": 0,  # the service would refuse it: unsupported, not to send
        "cn-south-1": 1,
    }
    east = regions["cn-east-2"]
    assert (east["already_done"], east["duplicates"], east["conflicts"], east["invalid"]) == (
        1,
        1,
        2,
        1,
    )
    assert regions["cn-south-1"]["skipped_failed"] == 1
    assert regions["cn-north-4"]["unsupported"] == 1
    assert regions["cn-north-4"]["supported"] is False
    assert all(v["supported"] for r, v in regions.items() if r != "cn-north-4")
    assert doc["unsupported_routes"] == [
        {"source_region": "cn-north-1", "destination_region": "cn-north-4", "pairs": 1}
    ]
    totals = doc["totals"]
    assert totals["to_send"] == 5
    assert (totals["already_done"], totals["skipped_failed"], totals["unsupported"]) == (1, 1, 1)
    assert doc["estimate"]["requests"] == 5
    assert doc["capabilities_checked"] is True
    assert [row["line"] for row in doc["invalid_rows"]] == [11]
    assert doc["conflicts"][0]["lines"] == [9, 10]
    # Nothing was sent, and the ledger was only read.
    assert sim.counters.requests_for(CAPABILITIES, 200) == 1
    assert not [route for route, _ in sim.counters.requests if route == REPLICATE]
    assert ledger.read_bytes() == before


def test_plan_honours_retry_failed(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = _known_case(sim, tmp_path)
    argv = ["plan", "--json", "--retry-failed", *_common(sim, manifest, ledger)]
    south = _plan_json(capsys, argv, 3)["regions"]["cn-south-1"]
    assert (south["to_send"], south["retry_failed"], south["skipped_failed"]) == (2, 1, 0)


def test_run_dry_run_prints_the_same_plan_and_writes_no_ledger(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = _known_case(sim, tmp_path)
    planned = _plan_json(capsys, ["plan", "--json", *_common(sim, manifest, ledger)], 3)
    dry = _plan_json(capsys, ["run", "--dry-run", "--json", *_common(sim, manifest, ledger)], 3)
    assert dry["regions"] == planned["regions"]
    assert dry["totals"] == planned["totals"]

    fresh = tmp_path / "fresh.jsonl"
    assert main(["run", "--dry-run", *_common(sim, manifest, fresh)]) == 3
    table = capsys.readouterr().out
    assert "cn-north-4" in table
    assert "NO" in table
    assert "unsupported: 1 pairs from cn-north-1 to cn-north-4" in table
    assert not fresh.exists()
    assert not [route for route, _ in sim.counters.requests if route == REPLICATE]


def test_rows_without_a_source_region_are_checked_against_every_source(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = sim.state.projects[0]
    item = next(i.id for i in sim.state.items_of(project.id) if i.status == "available")
    manifest = tmp_path / "m.csv"
    rows = [
        {
            "checkpoint_item_id": item,
            "project_id": project.id,
            "destination_region": region,
            "destination_project_id": "c" * 32,
        }
        for region in ("cn-north-4", "ap-southeast-9")  # some source can reach the first
    ]
    write_manifest(manifest, rows)
    argv = ["plan", "--json", "--manifest", str(manifest), "--endpoint", sim.base_url]
    doc = _plan_json(capsys, argv, 3)
    assert doc["regions"]["cn-north-4"]["supported"] is True
    assert doc["unsupported_routes"] == [
        {"source_region": None, "destination_region": "ap-southeast-9", "pairs": 1}
    ]


def test_offline_plan_asks_nothing(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = _known_case(sim, tmp_path)
    argv = ["plan", "--json", "--offline", *_common(sim, manifest, ledger)]
    doc = _plan_json(capsys, argv, 3)  # conflicts and an invalid row
    assert doc["capabilities_checked"] is False
    assert doc["totals"]["unsupported"] == 0
    assert doc["regions"]["cn-north-4"]["supported"] is None
    assert doc["estimate"]["seconds"] is None  # no rate, no latency sample
    assert not sim.counters.requests


def test_clean_manifest_plans_with_exit_0(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.simulator.sample import write_estate_manifest

    manifest = tmp_path / "estate.csv"
    rows = write_estate_manifest(sim.state, manifest, limit=12)
    argv = ["plan", "--manifest", str(manifest), "--endpoint", sim.base_url, "--rate", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"estimate: {rows} requests, ~3s" in out


def test_estimate_takes_the_tightest_limit() -> None:
    settings = RunSettings.of(rate=10.0, concurrency=4, per_region=2)
    assert estimate_seconds({}, settings, 0.1) == 0.0
    assert estimate_seconds({"a": 50, "b": 50}, settings, None) == 10.0  # the rate
    # 100 pairs * 1 s over min(4, 2 * 2) slots = 25 s; region a alone: 90 * 1 / 2 = 45 s.
    assert estimate_seconds({"a": 90, "b": 10}, settings, 1.0) == 45.0
    assert estimate_seconds({"a": 1}, RunSettings(), None) is None
