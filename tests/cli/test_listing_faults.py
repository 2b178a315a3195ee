"""A listing behind a flaky gateway, end to end through the CLI: ``discover`` and ``coverage``
against a simulator that answers a share of every call (the listing's pages too) with a 503 or
a cut connection. The failed page is asked again, not the listing: each page is answered 200
exactly once (as many 200s as a clean listing takes), and every backup is listed exactly once
(the same manifest, the same coverage, as without faults)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import LIST_ITEMS
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

REGION = "cn-north-1"
TO = "cn-south-1=95bf705ea7424d84d1073b5fb8d7fdf5"
FAULTS = {"p503": 0.25, "p_drop": 0.05}
CONFIG = """
[discover]
page_size = 7

[retry]
base_delay = 0.001
max_delay = 0.01
max_attempts = 30
budget_percent = 100
"""


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    knobs = {"items": 400, "seed": 11, "regions": (REGION,), "faults_on": "all", "age_days": 3}
    with simulator_thread(**knobs) as served:
        use_sim_credentials(monkeypatch, served)
        yield served


def _common(sim: Simulator, tmp_path: Path) -> list[str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    argv = ["--endpoint", sim.base_url, "--config", str(config), "--project-id"]
    return [*argv, sim.state.projects[0].id, "--region", REGION, "--log-level", "error"]


def _answers(sim: Simulator) -> tuple[int, int]:
    """(200s, everything else) the listing's route was answered so far."""
    counts = sim.counters.requests
    total = sum(n for (name, _), n in counts.items() if name == LIST_ITEMS)
    ok = sim.counters.requests_for(LIST_ITEMS, 200)
    return ok, total - ok


def _twice(sim: Simulator, command: list[str], out: Path) -> tuple[int, int, int]:
    """``command`` without faults, then with them (``-o`` the clean output, ``out`` the other):
    the clean listing's pages, the faulty one's 200s and its failed answers."""
    clean = out.with_suffix(".clean" + out.suffix)
    assert main([*command, "-o", str(clean)]) in {ExitCode.OK, 3}
    pages, none = _answers(sim)
    assert none == 0
    sim.update_faults(**FAULTS)
    assert main([*command, "-o", str(out)]) in {ExitCode.OK, 3}
    ok, failed = _answers(sim)
    return pages, ok - pages, failed


def test_discover_asks_a_failed_page_again_and_lists_each_backup_once(
    sim: Simulator, tmp_path: Path
) -> None:
    found = tmp_path / "found.csv"
    command = ["discover", "--to", TO, "--page-size", "7", *_common(sim, tmp_path)]
    pages, ok, failed = _twice(sim, command, found)
    print(f"discover: {pages} pages; with faults {ok} answered, {failed} failed")

    assert pages > 30  # a long listing: a restart from page 1 would show in the 200s
    assert failed > 5  # pages did fail, and were asked again...
    assert ok == pages  # ...each page answered once: none asked again after a 200

    def rows(path: Path) -> list[tuple[str, str]]:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            return [(r["checkpoint_item_id"], r["destination_region"]) for r in reader]

    got = rows(found)
    assert len(got) == len(set(got)) > 100  # each backup once
    assert sorted(got) == sorted(rows(found.with_suffix(".clean.csv")))  # none missed


def test_coverage_asks_a_failed_page_again_and_counts_each_backup_once(
    sim: Simulator, tmp_path: Path
) -> None:
    report = tmp_path / "coverage.json"
    at = datetime.fromtimestamp(sim.state.now(), UTC).isoformat()
    command = ["coverage", "--region-to", "cn-south-1", "--rpo", "26h", "--at", at]
    pages, ok, failed = _twice(sim, [*command, "--format", "json", *_common(sim, tmp_path)], report)
    print(f"coverage: {pages} pages; with faults {ok} answered, {failed} failed")

    assert pages > 30
    assert failed > 5
    assert ok == pages
    got = json.loads(report.read_text())
    clean = json.loads(report.with_suffix(".clean.json").read_text())
    assert got["rows"] == clean["rows"]  # the same backups judged: none missed, none twice
    assert len(got["rows"]) > 50
