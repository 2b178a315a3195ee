"""Ledger reports: selection of runs, latest-result-wins, errors, timings, renderings, and the
manifest of pairs to send again. Ledgers are JSON lines written here, read back as a stream."""

from __future__ import annotations

import csv
import gc
import io
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.errors import ConfigError, LedgerError
from orchestrator.insight.failed_manifest import write_failed_manifest
from orchestrator.insight.report import build_report
from orchestrator.insight.report_model import MANIFEST_HEADER, STATUS_ORDER
from orchestrator.insight.report_render import render_csv, render_json, render_table

SRC = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
DST = "e0b97bac532c4c5196fa4b3a32253be4"


class Ledger:
    """Builds a schema v1 ledger file line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self.clock = 0

    def _line(self, event: str, run_id: str, **fields: Any) -> None:
        self.clock += 1
        ts = f"2025-03-01T00:{self.clock // 60:02d}:{self.clock % 60:02d}.000000+00:00"
        self.lines.append({"v": 1, "event": event, "ts": ts, "run_id": run_id, **fields})

    def started(self, run_id: str, manifest: str | None = "m.csv") -> None:
        self._line(
            "run_started",
            run_id,
            manifest=manifest,
            source="manifest",
            settings={},
            version="0.1.0",
        )

    def attempt(self, run_id: str, item: str, region: str = "cn-east-2", number: int = 1) -> None:
        self._line(
            "attempt",
            run_id,
            project_id=SRC,
            checkpoint_item_id=item,
            destination_region=region,
            destination_project_id=DST,
            attempt=number,
        )

    def result(
        self,
        run_id: str,
        item: str,
        status: str,
        region: str = "cn-east-2",
        *,
        attempts: int = 1,
        duration_s: float = 1.0,
        http_status: int | None = 200,
        error_code: str | None = None,
        error_msg: str | None = None,
    ) -> None:
        for number in range(1, attempts + 1):
            self.attempt(run_id, item, region, number)
        self._line(
            "result",
            run_id,
            checkpoint_item_id=item,
            project_id=SRC,
            source_region="cn-north-1",
            destination_region=region,
            destination_project_id=DST,
            status=status,
            replication_record_id="rr-" + item if status == "replicated" else None,
            http_status=http_status,
            error_code=error_code,
            error_msg=error_msg,
            attempts=attempts,
            started_at="s",
            finished_at="f",
            duration_s=duration_s,
            manifest_line=2,
        )

    def rejected(self, run_id: str, line: int, item: str | None = None) -> None:
        self._line(
            "result",
            run_id,
            checkpoint_item_id=item,
            project_id=SRC if item else None,
            source_region=None,
            destination_region="cn-east-2" if item else None,
            destination_project_id=DST if item else None,
            status="rejected",
            replication_record_id=None,
            http_status=None,
            error_code="manifest.invalid",
            error_msg="checkpoint_item_id is empty",
            attempts=0,
            manifest="m.csv",
            manifest_line=line,
            field="checkpoint_item_id",
        )

    def finished(self, run_id: str, exit_code: int = 0, *, interrupted: bool = False) -> None:
        self._line(
            "run_finished",
            run_id,
            counts={},
            duplicates=0,
            conflicts=0,
            interrupted=interrupted,
            reason="signal" if interrupted else None,
            duration_s=12.5,
            exit_code=exit_code,
            requests=7,
            retries=2,
        )

    def copy(self, item: str, copy_status: str, region: str = "cn-east-2", **extra: object) -> None:
        self._line(
            "copy_status",
            "poll-1",
            project_id=SRC,
            checkpoint_item_id=item,
            destination_region=region,
            destination_project_id=DST,
            replication_record_id="rr-" + item,
            copy_status=copy_status,
            progress=50,
            **extra,
        )

    def write(self) -> Path:
        self.path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in self.lines))
        return self.path


def read(path: Path) -> Iterator[dict[str, Any]]:
    """A one-pass stream, like ledger.iter_records."""
    with path.open("rb") as file:
        for line in file:
            yield orjson.loads(line)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.jsonl")


def two_runs(ledger: Ledger) -> Path:
    ledger.started("r1")
    ledger.result("r1", "a", "replicated")
    ledger.result(
        "r1",
        "b",
        "failed",
        http_status=400,
        error_code="CSBS.1002",
        error_msg="bad destination project",
    )
    ledger.result("r1", "c", "gave_up", attempts=3, http_status=503, error_code="CSBS.0001")
    ledger.result("r1", "d", "replicated", region="cn-south-1")
    ledger.finished("r1", exit_code=4)
    ledger.started("r2")
    ledger.result(
        "r2", "b", "failed", http_status=400, error_code="CSBS.1002", error_msg="still bad"
    )
    ledger.result("r2", "c", "replicated", attempts=2)
    ledger.finished("r2", exit_code=3)
    return ledger.write()


def test_last_run_is_the_default(ledger: Ledger) -> None:
    report = build_report(read(two_runs(ledger)))
    assert report.scope == "last"
    assert [run.run_id for run in report.runs] == ["r2"]
    assert report.counts == {("cn-east-2", "replicated"): 1, ("cn-east-2", "failed"): 1}
    assert report.pairs == 2
    assert report.runs[0].exit_code == 3
    assert report.runs[0].finished_at is not None


def test_all_runs_latest_result_per_pair_wins(ledger: Ledger) -> None:
    report = build_report(read(two_runs(ledger)), run="all")
    assert [run.run_id for run in report.runs] == ["r1", "r2"]
    # c gave up in r1 and was replicated in r2: it counts once, as replicated.
    assert report.counts == {
        ("cn-east-2", "replicated"): 2,
        ("cn-east-2", "failed"): 1,
        ("cn-south-1", "replicated"): 1,
    }
    assert report.totals["replicated"] == 3
    assert report.totals["gave_up"] == 0
    assert list(report.totals) == list(STATUS_ORDER)
    assert report.pairs == 4
    assert report.regions == ("cn-east-2", "cn-south-1")


def test_one_run_by_id_and_an_unknown_id(ledger: Ledger) -> None:
    path = two_runs(ledger)
    report = build_report(read(path), run="r1")
    assert [run.run_id for run in report.runs] == ["r1"]
    assert report.counts[("cn-east-2", "gave_up")] == 1
    assert report.pairs == 4
    with pytest.raises(ConfigError, match="nope"):
        build_report(read(path), run="nope")


def test_errors_are_every_failure_that_happened(ledger: Ledger) -> None:
    report = build_report(read(two_runs(ledger)), run="all")
    codes = [(e.error_code, e.count) for e in report.errors]
    assert codes == [("CSBS.1002", 2), ("CSBS.0001", 1)]
    first = report.errors[0]
    assert (first.example_msg, first.example_http_status, first.example_checkpoint_item_id) == (
        "bad destination project",
        400,
        "b",
    )
    assert len(build_report(read(ledger.path), run="all", top=1).errors) == 1


def test_retries_attempts_and_durations_of_sent_pairs(ledger: Ledger) -> None:
    ledger.started("r1")
    for i, seconds in enumerate([0.5, 1.0, 2.0, 4.0, 100.0]):
        ledger.result("r1", f"i{i}", "replicated", attempts=1 + i % 3, duration_s=seconds)
    ledger.rejected("r1", line=9)  # not sent: no attempt, no duration
    ledger.finished("r1")
    report = build_report(read(ledger.write()))
    assert report.attempts == {1: 2, 2: 2, 3: 1}
    assert report.retries == 0 * 2 + 1 * 2 + 2 * 1
    assert report.durations_count == 5
    assert report.duration_median_s == 2.0
    assert report.duration_p95_s == 100.0  # nearest rank: the 5th of 5
    assert report.totals["rejected"] == 1
    assert report.counts[("-", "rejected")] == 1


def test_a_pair_attempted_without_a_result_is_unknown(ledger: Ledger) -> None:
    ledger.started("r1")
    ledger.result("r1", "a", "replicated")
    ledger.attempt("r1", "b")  # the run crashed with this request in flight
    report = build_report(read(ledger.write()))
    assert report.counts == {("cn-east-2", "replicated"): 1, ("cn-east-2", "unknown"): 1}
    assert report.runs[0].finished_at is None
    # The resume reconciles b: its result replaces the unknown.
    ledger.started("r2")
    ledger.result("r2", "b", "already_replicated")
    ledger.finished("r2")
    report = build_report(read(ledger.write()), run="all")
    assert report.totals["unknown"] == 0
    assert report.totals["already_replicated"] == 1


def test_latest_copy_status_of_the_selected_pairs(ledger: Ledger) -> None:
    ledger.started("r1")
    for item in "abc":
        ledger.result("r1", item, "replicated")
    ledger.finished("r1")
    ledger.copy("a", "copying")
    ledger.copy("b", "copying")
    ledger.copy("a", "success")
    ledger.copy("c", "fail")
    ledger.copy("zzz", "success")  # a pair of no selected run
    report = build_report(read(ledger.write()))
    assert [run.run_id for run in report.runs] == ["r1"]  # copy lines do not start a run
    assert report.copy_status == {"copying": 1, "fail": 1, "success": 1}


def test_a_ledger_without_run_started_lines(ledger: Ledger) -> None:
    ledger.result("old", "a", "failed", error_code="X")
    ledger.result("new", "a", "replicated")
    report = build_report(read(ledger.write()))
    assert [run.run_id for run in report.runs] == ["new"]
    assert report.runs[0].started_at is None


def test_empty_ledger_and_newer_schema(ledger: Ledger, tmp_path: Path) -> None:
    empty = build_report(iter([]))
    assert empty.runs == ()
    assert empty.pairs == 0
    assert "no runs" in render_table(empty)
    assert orjson.loads(render_json(empty))["pairs"] == 0
    with pytest.raises(LedgerError, match="v=2"):
        build_report(iter([{"v": 2, "event": "run_started", "run_id": "x"}]))


def test_a_long_ledger_is_not_held_in_memory() -> None:
    """Records are aggregated as they stream by: none is kept once the next one is read."""

    class Record(dict[str, Any]):
        pass

    refs: list[weakref.ref[Record]] = []
    alive_at_end: list[int] = []
    n = 20_000

    def stream() -> Iterator[Mapping[str, Any]]:
        yield Record(v=1, event="run_started", ts="t", run_id="r")
        for i in range(n):
            record = Record(
                v=1,
                event="result",
                ts="t",
                run_id="r",
                project_id=SRC,
                checkpoint_item_id=f"item-{i}",
                destination_region=f"r{i % 4}",
                destination_project_id=DST,
                status="replicated",
                attempts=1,
                duration_s=i / n,
            )
            refs.append(weakref.ref(record))
            yield record
            del record
        gc.collect()
        alive_at_end.append(sum(ref() is not None for ref in refs))

    report = build_report(stream())
    assert report.pairs == n
    assert alive_at_end[0] <= 1  # the one the report's loop is holding right now
    assert report.duration_p95_s == pytest.approx(0.95, abs=1e-3)


def test_render_table_is_plain_and_aligned(ledger: Ledger) -> None:
    text = render_table(build_report(read(two_runs(ledger)), run="all"))
    lines = text.splitlines()
    assert lines[0] == "Ledger report: all runs, 2 run(s), 4 pair(s)"
    header = next(line for line in lines if line.lstrip().startswith("destination_region"))
    assert header.split() == ["destination_region", *STATUS_ORDER, "total"]
    body = lines[lines.index(header) + 1 : lines.index(header) + 4]
    assert [row.split() for row in body] == [
        ["cn-east-2", "2", "0", "1", "0", "0", "0", "3"],
        ["cn-south-1", "1", "0", "0", "0", "0", "0", "1"],
        ["total", "3", "0", "1", "0", "0", "0", "4"],
    ]
    # Right-aligned numbers end in the same column as their header.
    assert {len(row) for row in body} == {len(header)}
    assert "CSBS.1002" in text
    assert "Attempts per sent pair: 1: 4, 2: 1, 3: 1 (retries: 3)" in text
    assert "\x1b[" not in text


def test_render_json_has_stable_documented_keys(ledger: Ledger) -> None:
    ledger.started("r1")
    ledger.result("r1", "a", "replicated", duration_s=2.0)
    ledger.result("r1", "b", "failed", http_status=403, error_code=None, error_msg="forbidden")
    ledger.finished("r1", exit_code=3)
    ledger.copy("a", "success")
    doc = orjson.loads(render_json(build_report(read(ledger.write()))))
    assert list(doc) == [
        "scope",
        "runs",
        "pairs",
        "totals",
        "by_region",
        "errors",
        "retries",
        "attempts",
        "durations",
        "copy_status",
        "copy_states",
        "rejected",
    ]
    assert list(doc["runs"][0]) == [
        "run_id",
        "started_at",
        "finished_at",
        "manifest",
        "source",
        "interrupted",
        "reason",
        "exit_code",
        "requests",
        "retries",
        "duration_s",
    ]
    assert doc["by_region"]["cn-east-2"] == {
        "replicated": 1,
        "already_replicated": 0,
        "failed": 1,
        "gave_up": 0,
        "rejected": 0,
        "unknown": 0,
        "total": 2,
    }
    assert doc["errors"] == [
        {
            "error_code": "HTTP 403",
            "count": 1,
            "example": {"error_msg": "forbidden", "http_status": 403, "checkpoint_item_id": "b"},
        }
    ]
    assert doc["attempts"] == {"1": 2}
    assert doc["durations"] == {"count": 2, "median_s": 1.5, "p95_s": 2.0}
    assert doc["copy_status"] == {"success": 1}


def test_render_csv_one_row_per_region_and_status(ledger: Ledger) -> None:
    rows = list(
        csv.reader(io.StringIO(render_csv(build_report(read(two_runs(ledger)), run="all"))))
    )
    assert rows[0] == ["destination_region", "status", "count"]
    assert len(rows) == 1 + 2 * len(STATUS_ORDER)
    assert ["cn-east-2", "failed", "1"] in rows
    assert ["cn-south-1", "gave_up", "0"] in rows


def manifest_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == MANIFEST_HEADER
        return list(reader)


def test_failed_manifest_of_the_last_run(ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "retry.csv"
    count = write_failed_manifest(read(two_runs(ledger)), out)
    assert count == 1
    assert manifest_rows(out) == [
        {
            "checkpoint_item_id": "b",
            "destination_region": "cn-east-2",
            "destination_project_id": DST,
            "project_id": SRC,
            "source_region": "cn-north-1",
        }
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_manifest_leaves_out_pairs_that_later_succeeded(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = two_runs(ledger)
    out = tmp_path / "retry.csv"
    # In r1, b failed and c gave up; c was replicated in r2, so only b is worth sending again.
    assert write_failed_manifest(read(path), out, run="r1") == 1
    assert [row["checkpoint_item_id"] for row in manifest_rows(out)] == ["b"]
    assert write_failed_manifest(read(path), out, run="r1", include=("gave_up",)) == 0


def test_failed_manifest_with_copy_failures_and_rejections(ledger: Ledger, tmp_path: Path) -> None:
    ledger.started("r1")
    ledger.result("r1", "a", "replicated")
    ledger.result("r1", "b", "replicated")
    ledger.result("r1", "c", "gave_up")
    ledger.rejected("r1", line=7)  # no ids: cannot be sent again as is
    ledger.rejected("r1", line=8, item="d")
    ledger.finished("r1")
    ledger.copy("a", "fail")
    ledger.copy("b", "fail")
    ledger.copy("b", "success")  # a later poll: the copy went through after all
    out = tmp_path / "retry.csv"
    count = write_failed_manifest(
        read(ledger.write()), out, include=("gave_up", "copy_failed", "rejected")
    )
    rows = manifest_rows(out)
    assert count == 3
    assert [row["checkpoint_item_id"] for row in rows] == ["c", "d", "a"]
    assert rows[2]["source_region"] == "cn-north-1"  # kept from the result line
    assert write_failed_manifest(read(ledger.path), out) == 1  # the default: failed, gave_up
    assert [row["checkpoint_item_id"] for row in manifest_rows(out)] == ["c"]


def test_failed_manifest_rejects_unknown_include(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replicated"):
        write_failed_manifest(iter([]), tmp_path / "x.csv", include=("replicated",))


def test_failed_manifest_is_read_back_by_the_manifest_reader(tmp_path: Path) -> None:
    from orchestrator.engine.manifest import iter_manifest
    from orchestrator.models import ReplicationTask

    ledger = Ledger(tmp_path / "ledger.jsonl")
    item = "11111111-2222-3333-4444-555555555555"
    ledger.started("r1")
    ledger.result("r1", item, "gave_up", attempts=3, http_status=503)
    ledger.finished("r1", exit_code=4)
    out = tmp_path / "retry.csv"
    assert write_failed_manifest(read(ledger.write()), out) == 1
    (task,) = list(iter_manifest(out, default_project_id=None))
    assert task == ReplicationTask(
        checkpoint_item_id=item,
        project_id=SRC,
        destination_region="cn-east-2",
        destination_project_id=DST,
        source_region="cn-north-1",
        line=2,
    )


def test_skipped_copies_are_shown_and_sent_again_with_copy_failed(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The record vocabulary's ``skip`` is a copy that did not happen (issue 15)."""
    ledger.started("r1")
    for item in "abcd":
        ledger.result("r1", item, "replicated")
    ledger.finished("r1")
    ledger.copy("a", "skip", state="skipped")
    ledger.copy("b", "replicating", state="running")
    ledger.copy("c", "copying")  # an older ledger: no state, the item vocabulary
    ledger.copy("d", "fail", state="failed")
    report = build_report(read(ledger.write()))
    assert report.copy_states == {"running": 2, "failed": 1, "skipped": 1}
    assert "Copies by state: running: 2, failed: 1, skipped: 1" in render_table(report)
    out = tmp_path / "retry.csv"
    assert write_failed_manifest(read(ledger.path), out, include=("copy_failed",)) == 2
    assert sorted(row["checkpoint_item_id"] for row in manifest_rows(out)) == ["a", "d"]
