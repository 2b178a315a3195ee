"""The summary a stopped run prints counts what ``report`` counts for that run: pairs sent
whose answer the stop cut off are ``unknown`` (an ``attempt`` line, no ``result``) in both,
and in ``run_finished``'s counts and the ``--metrics-file``; the summary says what to do."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.helpers.env import use_sim_credentials
from tests.helpers.simthread import simulator_thread

#: Replicate answers take up to this long (exactly this, or a random share of it): requests
#: sent shortly before the stop are unanswered when the grace period ends and the run is
#: cancelled (the simulator's shutdown waits for them: under a second, after the test).
_LATENCY_S = 0.5


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=30, seed=5) as served:
        yield served


def _manifest(sim: Simulator, path: Path, count: int) -> Path:
    rows = [
        row
        for row in estate_rows(sim.state)
        if sim.state.latest_record(row["checkpoint_item_id"], row["destination_region"]) is None
    ][:count]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _summary_counts(out: str) -> dict[str, int]:
    """The statuses of the summary's first line (``verdict: status n, status n (...)``)."""
    said = out.splitlines()[0].rsplit(": ", 1)[-1]
    return {status: int(n) for status, n in re.findall(r"\b([a-z_]+) (\d+)\b", said)}


def _report_totals(ledger: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    assert main(["report", str(ledger), "--format", "json"]) == ExitCode.OK
    totals: dict[str, int] = json.loads(capsys.readouterr().out)["totals"]
    return {status: n for status, n in totals.items() if n}


def _run_finished(ledger: Path) -> dict[str, Any]:
    (finished,) = [r for r in iter_records(ledger) if r["event"] == "run_finished"]
    return dict(finished)


@pytest.mark.parametrize(
    "case",  # the simulator's latency, and --max-duration
    [
        ({"latency_s": _LATENCY_S}, "0.05"),
        ({"latency_s": 0.0, "latency_jitter_s": _LATENCY_S}, "0.3"),
    ],
    ids=["all-in-flight", "some-answered"],
)
def test_a_stopped_runs_summary_counts_the_pairs_in_flight_as_report_does(
    case: tuple[dict[str, float], str],
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    faults, max_duration = case
    use_sim_credentials(monkeypatch, sim)
    sim.update_faults(**faults)
    manifest = _manifest(sim, tmp_path / "m.csv", 12)
    ledger, metrics = tmp_path / "ledger.jsonl", tmp_path / "run.prom"
    code = main(
        [
            "run",
            "--manifest",
            str(manifest),
            "--ledger",
            str(ledger),
            "--endpoint",
            sim.base_url,
            "--no-progress",
            "--log-format",
            "json",
            "--concurrency",
            "4",
            "--max-duration",
            max_duration,
            "--grace-period",
            "0.01",
            "--metrics-file",
            str(metrics),
        ]
    )
    out = capsys.readouterr().out
    assert code == ExitCode.INTERRUPTED, out

    report = _report_totals(ledger, capsys)
    assert report.get("unknown", 0) > 0, report  # the stop did cut requests off
    assert _summary_counts(out) == report, out
    assert "`resume` asks it about each before sending again" in out
    assert _run_finished(ledger)["counts"] == report
    text = metrics.read_text(encoding="utf-8")
    assert re.search(rf'status="unknown"[^\n]*\}} {report["unknown"]}\n', text), text
