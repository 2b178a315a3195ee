"""The look-ups' pace, end to end through the CLI, against a simulator whose gateway throttles
every call of a project (``faults_on="all"``) at a rate the tool is not told: ``discover``'s
listing pages and ``track``'s polls learn it and are seldom refused, what they record is right,
and what one command learned the next starts at (the state file)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import CAPABILITIES, LIST_ITEMS, LIST_RECORDS, REPLICATE
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

REGION = "cn-north-1"
TO = "cn-south-1=95bf705ea7424d84d1073b5fb8d7fdf5"
RATE = 100.0  # the gateway's rate per project, all calls; the burst 5
CONFIG = """
[retry]
base_delay = 0.001
max_delay = 0.01
max_attempts = 30
budget_percent = 100
"""


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    knobs: dict[str, Any] = {"items": 200, "seed": 6, "regions": (REGION,)}
    knobs |= {"faults_on": "all", "throttle_rate": RATE, "throttle_burst": 5}
    knobs |= {"copy_wait_s": 0, "copy_duration_s": 60}
    with simulator_thread(**knobs) as served:
        use_sim_credentials(monkeypatch, served)
        yield served


def _common(sim: Simulator, tmp_path: Path, *extra: str) -> list[str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    argv = ["--endpoint", sim.base_url, "--config", str(config), "--log-format", "json"]
    return [*argv, "--log-level", "warning", *extra]


def _discover(sim: Simulator, tmp_path: Path, out: Path, *extra: str) -> int:
    project = sim.state.projects[0].id
    argv = ["discover", "-o", str(out), "--project-id", project, "--region", REGION, "--to", TO]
    return main([*argv, "--page-size", "2", *_common(sim, tmp_path, *extra)])


def _gets(sim: Simulator, route: str) -> tuple[int, int]:
    """(all answers, 429s) of one route so far."""
    counts = sim.counters.requests
    total = sum(n for (name, _), n in counts.items() if name == route)
    return total, sim.counters.requests_for(route, 429)


def _rows(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(r["checkpoint_item_id"], r["destination_region"]) for r in csv.DictReader(handle)]


def test_discover_lists_a_throttled_estate_at_its_pace_and_loses_nothing(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    found = tmp_path / "found.csv"
    assert _discover(sim, tmp_path, found, "--state-file", str(state)) == ExitCode.OK
    pages, refused = _gets(sim, LIST_ITEMS)
    out = capsys.readouterr().out
    print(f"discover: {refused} of {pages} pages refused")

    # A page per two available items, each answered once (a refused page is asked again,
    # not the listing).
    project = sim.state.projects[0].id
    available = [i for i in sim.state.items_of(project) if i.status == "available"]
    assert sim.counters.requests_for(LIST_ITEMS, 200) == len(available) // 2 + 1 >= 70
    assert pages == len(available) // 2 + 1 + refused
    assert refused <= 0.1 * pages, (refused, pages)
    assert _gets(sim, CAPABILITIES)[1] == 0  # the preflight, first, is not refused
    # Nothing lost or listed twice: the manifest is the one an unthrottled listing writes.
    rows = _rows(found)
    assert len(rows) == len(set(rows)) > 100
    sim.update_faults(throttle_rate=0.0)
    again = tmp_path / "again.csv"
    assert _discover(sim, tmp_path, again, "--pace", "false") == ExitCode.OK
    assert sorted(_rows(again)) == sorted(rows)
    assert f"wrote {len(rows)} pairs to {found}" in out
    # What the listing learned is kept for the next command.
    saved = orjson.loads(state.read_bytes())["pace"]
    (label,) = saved
    assert label == f"{REGION}/{sim.state.projects[0].id}"
    assert RATE / 2 < saved[label] < RATE * 1.5


def _manifest(sim: Simulator, path: Path) -> int:
    rows = [
        row
        for row in estate_rows(sim.state)
        if not sim.state.latest_record(row["checkpoint_item_id"], row["destination_region"])
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _copy_lines(ledger: Path) -> list[dict[str, Any]]:
    return [r for r in iter_records(ledger) if r["event"] == "copy_status"]


def test_track_polls_a_throttled_service_at_its_pace_and_records_each_copy_once(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    pairs = _manifest(sim, manifest)
    assert pairs > 100
    run = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--no-progress"]
    assert main([*run, *_common(sim, tmp_path)]) == ExitCode.OK
    sim.advance(3600)  # every copy has ended
    capsys.readouterr()

    track = ["track", str(ledger), "--interval", "0", "--concurrency", "16"]
    assert main([*track, *_common(sim, tmp_path)]) == ExitCode.OK  # no state file: learns

    polls, refused = _gets(sim, LIST_RECORDS)
    assert polls >= pairs
    assert refused <= 0.1 * polls, (refused, polls)
    out = capsys.readouterr().out
    print(f"track: {refused} of {polls} polls refused")
    assert f"copies done: success {pairs} ({pairs} tracked" in out
    lines = _copy_lines(ledger)
    assert len(lines) == pairs  # one line per copy: a refused poll records nothing
    assert {(line["copy_status"], line["state"]) for line in lines} == {("success", "success")}


def test_a_nightly_sequence_carries_the_learned_rate_from_step_to_step(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --discover`` (the listing, then the run at what it learned), then ``track``
    from the state file: paced from its first poll, so it is barely refused."""
    state, ledger = tmp_path / "state.json", tmp_path / "night.jsonl"
    project = sim.state.projects[0].id
    argv = ["run", "--discover", "--ledger", str(ledger), "--no-progress", "--to", TO]
    argv += ["--project-id", project, "--region", REGION, "--page-size", "2"]
    argv += ["--state-file", str(state)]
    assert main([*argv, *_common(sim, tmp_path)]) == ExitCode.OK
    label = f"{REGION}/{project}"
    (finished,) = [r for r in iter_records(ledger) if r["event"] == "run_finished"]
    # The run started at the listing's rate (its limit is known even if it was never refused).
    assert finished["pace"][label]["limit"] is not None
    sent, throttled = _gets(sim, REPLICATE)
    assert throttled <= 0.1 * sent, (throttled, sent)
    learned = orjson.loads(state.read_bytes())["pace"][label]
    assert RATE / 2 < learned < RATE * 1.5

    sim.advance(3600)
    before = _gets(sim, LIST_RECORDS)
    track = ["track", str(ledger), "--interval", "0", "--state-file", str(state)]
    assert main([*track, *_common(sim, tmp_path)]) == ExitCode.OK
    polls, refused = (a - b for a, b in zip(_gets(sim, LIST_RECORDS), before, strict=True))
    assert polls >= finished["counts"]["replicated"]
    assert refused <= 2, (refused, polls)
    assert "copies done" in capsys.readouterr().out


def test_with_503s_cut_connections_and_throttling_nothing_is_lost_or_recorded_twice(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The look-ups under every fault at once: a listing restarted by a fault still lists
    each item once, and a poll that failed is asked again next round, its copy recorded once."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    pairs = _manifest(sim, manifest)
    run = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--no-progress"]
    assert main([*run, *_common(sim, tmp_path)]) == ExitCode.OK
    sim.advance(3600)
    sim.update_faults(p503=0.15, p_drop=0.05)

    track = ["track", str(ledger), "--interval", "0"]
    assert main([*track, *_common(sim, tmp_path)]) == ExitCode.OK
    lines = _copy_lines(ledger)
    assert len(lines) == pairs
    assert len({(line["checkpoint_item_id"], line["destination_region"]) for line in lines}) == (
        pairs
    )
    assert sim.counters.faults["p503"]
    assert sim.counters.faults["drop"]

    found = tmp_path / "found.csv"
    project = sim.state.projects[0].id
    argv = ["discover", "-o", str(found), "--project-id", project, "--region", REGION]
    assert main([*argv, "--to", TO, "--page-size", "40", *_common(sim, tmp_path)]) == 0
    rows = _rows(found)
    assert len(rows) == len(set(rows))
    sim.update_faults(p503=0.0, p_drop=0.0, throttle_rate=0.0)
    again = tmp_path / "again.csv"
    assert main([*argv[:2], str(again), *argv[3:], "--to", TO, *_common(sim, tmp_path)]) == 0
    # (replicated by the run: only the items it did not send are pairs, both times)
    assert sorted(_rows(again)) == sorted(rows)
    assert sim.counters.faults["throttled"] > 0
    capsys.readouterr()
