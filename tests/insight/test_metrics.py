"""Prometheus textfile: the exposition format parsed back, escaping, carry-over, atomicity."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from orchestrator.insight.metrics import PREFIX, RunMetrics, write_textfile
from orchestrator.insight.report_model import STATUS_ORDER, Report, RunInfo

Sample = tuple[str, tuple[tuple[str, str], ...]]

_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"(?:,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> tuple[dict[str, str], dict[str, str], dict[Sample, float]]:
    """A small exposition-format parser: (HELP by name, TYPE by name, value by sample)."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: dict[Sample, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            types[name] = kind
        else:
            match = _LINE.match(line)
            assert match, line
            raw = match["labels"] or ""
            labels = tuple((m["key"], _unescape(m["value"])) for m in _LABEL.finditer(raw))
            assert "".join(m.group(0) for m in _LABEL.finditer(raw)) == raw, raw
            assert match["name"] in types, f"sample before its TYPE: {line}"
            samples[match["name"], labels] = float(match["value"])
    return helps, types, samples


def metrics(**overrides: object) -> RunMetrics:
    fields: dict[str, object] = {
        "results": {
            ("cn-east-2", "replicated"): 10,
            ("cn-east-2", "failed"): 2,
            ("cn-south-1", "gave_up"): 1,
        },
        "duration_s": 12.25,
        "retries": 3,
        "requests": 16,
        "finished_at": 1_740_000_000.5,
        "last_success_at": 1_740_000_000.0,
        "exit_code": 4,
        "interrupted": False,
    }
    fields.update(overrides)
    return RunMetrics(**fields)  # type: ignore[arg-type]  # test data of the right types


def test_every_metric_with_help_type_and_value(tmp_path: Path) -> None:
    path = tmp_path / "csbs.prom"
    write_textfile(path, metrics())
    helps, types, samples = parse(path.read_text())
    names = {
        "results_total",
        "run_duration_seconds",
        "retries_total",
        "requests_total",
        "last_run_timestamp_seconds",
        "last_success_timestamp_seconds",
        "run_exit_code",
        "run_interrupted",
        "run_in_progress",
    }
    assert set(types) == {PREFIX + name for name in names}
    assert set(helps) == set(types)
    assert set(types.values()) == {"gauge"}  # every value describes the last run
    assert (
        samples[
            PREFIX + "results_total",
            (("destination_region", "cn-east-2"), ("status", "replicated")),
        ]
        == 10
    )
    assert (
        samples[
            PREFIX + "results_total", (("destination_region", "cn-south-1"), ("status", "gave_up"))
        ]
        == 1
    )
    # Zeros too, for every status of every region seen: series do not come and go.
    results = {labels: v for (name, labels), v in samples.items() if name.endswith("results_total")}
    assert len(results) == 2 * len(STATUS_ORDER)
    assert results[("destination_region", "cn-south-1"), ("status", "replicated")] == 0
    assert samples[PREFIX + "run_duration_seconds", ()] == 12.25
    assert samples[PREFIX + "retries_total", ()] == 3
    assert samples[PREFIX + "requests_total", ()] == 16
    assert samples[PREFIX + "last_run_timestamp_seconds", ()] == 1_740_000_000.5
    assert samples[PREFIX + "last_success_timestamp_seconds", ()] == 1_740_000_000
    assert samples[PREFIX + "run_exit_code", ()] == 4
    assert samples[PREFIX + "run_interrupted", ()] == 0
    # The collector's reader needs the whole file readable by another user.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_label_values_are_escaped(tmp_path: Path) -> None:
    region = 'odd"re\\gion\nx'
    path = tmp_path / "csbs.prom"
    write_textfile(path, metrics(results={(region, "failed"): 1}))
    text = path.read_text()
    assert 'destination_region="odd\\"re\\\\gion\\nx"' in text
    _, _, samples = parse(text)
    assert (
        samples[PREFIX + "results_total", (("destination_region", region), ("status", "failed"))]
        == 1
    )


def test_last_success_is_carried_over_when_a_run_replicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "csbs.prom"
    write_textfile(path, metrics(last_success_at=None))
    _, types, _ = parse(path.read_text())
    assert PREFIX + "last_success_timestamp_seconds" not in types  # never succeeded: absent
    write_textfile(path, metrics(last_success_at=1000.0))
    write_textfile(path, metrics(last_success_at=None, finished_at=2000.0))
    _, _, samples = parse(path.read_text())
    assert samples[PREFIX + "last_success_timestamp_seconds", ()] == 1000
    assert samples[PREFIX + "last_run_timestamp_seconds", ()] == 2000


def test_replace_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "csbs.prom"
    write_textfile(path, metrics(exit_code=0))
    old = path.read_text()
    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # At the moment of the swap the new text is complete in the temporary file, and the
        # target still holds the old one.
        seen.append((str(src), Path(src).read_text(), path.read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_textfile(path, metrics(exit_code=3))
    ((src, new_text, target_text),) = seen
    assert Path(src).parent == tmp_path
    assert Path(src).name != path.name
    assert not src.endswith(".prom")  # the collector only reads *.prom
    assert target_text == old
    assert new_text == path.read_text()
    assert parse(new_text)[2][PREFIX + "run_exit_code", ()] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csbs.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "csbs.prom"
    write_textfile(path, metrics())
    old = path.read_text()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_textfile(path, metrics(exit_code=1))
    assert path.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csbs.prom"]


def test_from_report_takes_the_run_line_and_counts() -> None:
    report = Report(
        scope="r1",
        runs=(
            RunInfo("r1", duration_s=9.5, exit_code=3, requests=20, retries=4, interrupted=True),
        ),
        counts={("cn-east-2", "replicated"): 5, ("cn-east-2", "failed"): 1},
        totals={"replicated": 5, "failed": 1},
        pairs=6,
        errors=(),
        retries=4,
        attempts={1: 6},
        durations_count=6,
        duration_median_s=1.0,
        duration_p95_s=2.0,
        copy_status={},
    )
    got = RunMetrics.from_report(report, finished_at=100.0)
    assert got == RunMetrics(
        results={("cn-east-2", "replicated"): 5, ("cn-east-2", "failed"): 1},
        duration_s=9.5,
        retries=4,
        requests=20,
        finished_at=100.0,
        last_success_at=100.0,
        exit_code=3,
        interrupted=True,
    )
    nothing_new = Report(
        **{
            **{f: getattr(report, f) for f in Report.__dataclass_fields__},
            "totals": {"already_replicated": 6},
        }
    )
    assert RunMetrics.from_report(nothing_new, finished_at=1.0).last_success_at is None
