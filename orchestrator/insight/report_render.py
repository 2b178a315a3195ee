"""A :class:`Report` rendered: an aligned table, a JSON document, a CSV of counts."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from orchestrator.insight.report_model import RejectedRow, Report, RunInfo
from orchestrator.safe_text import csv_row, for_terminal

__all__ = ["render_csv", "render_json", "render_table", "report_dict"]

_TABLE_RUNS = 20  # the table lists at most this many runs (the JSON lists all)
_TABLE_REJECTED = 20  # ... and this many rejected rows


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _grid(headers: tuple[str, ...], rows: list[tuple[str, ...]], numeric: set[int]) -> list[str]:
    # Every cell may come from the ledger, hence from the service: no escape codes through.
    rows = [tuple(for_terminal(cell, 200) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def render_table(report: Report) -> str:
    """Plain aligned text for a terminal or an e-mail; stable, no colours."""
    scope = {"last": "last run", "all": "all runs"}.get(
        report.scope, f"run {for_terminal(report.scope, 100)}"
    )
    out = [f"Ledger report: {scope}, {len(report.runs)} run(s), {report.pairs} pair(s)"]
    if not report.runs:
        out.append("  (no runs in this ledger)")
        return "\n".join(out) + "\n"
    if report.scope == "last" and not report.pairs:
        # Typically a resume that found every pair done: its empty table would read as
        # "nothing was ever replicated".
        out.append("  (the last run has no pairs: `--run all` shows the pairs of every run)")
    out += _runs_table(report)
    out += _pairs_table(report)
    out += _errors_table(report)
    out += _rejected_lines(report)
    out += _summary_lines(report)
    return "\n".join(out) + "\n"


def _runs_table(report: Report) -> list[str]:
    out = ["", "Runs"]
    runs = report.runs[-_TABLE_RUNS:]
    if len(report.runs) > len(runs):
        out.append(f"  ... {len(report.runs) - len(runs)} earlier run(s) not shown")
    out += _grid(
        ("run_id", "started_at", "finished_at", "exit", "interrupted", "requests", "retries"),
        [
            (
                r.run_id,
                _text(r.started_at),
                _text(r.finished_at),
                _text(r.exit_code),
                _flag(r.interrupted),
                _text(r.requests),
                _text(r.retries),
            )
            for r in runs
        ],
        numeric={3, 5, 6},
    )
    return out


def _pairs_table(report: Report) -> list[str]:
    statuses = report.statuses
    rows = [
        (
            region,
            *(str(report.counts.get((region, s), 0)) for s in statuses),
            str(sum(report.counts.get((region, s), 0) for s in statuses)),
        )
        for region in report.regions
    ]
    rows.append(("total", *(str(report.totals[s]) for s in statuses), str(report.pairs)))
    header = ("destination_region", *statuses, "total")
    title = "Pairs by destination region and status (latest result per pair)"
    return ["", title, *_grid(header, rows, set(range(1, len(statuses) + 2)))]


def _errors_table(report: Report) -> list[str]:
    if not report.errors:
        return []
    rows: list[tuple[str, ...]] = [
        (
            e.error_code,
            str(e.count),
            _text(e.example_http_status),
            _text(e.example_checkpoint_item_id),
            _shorten(e.example_msg),
        )
        for e in report.errors
    ]
    header = ("error_code", "count", "http", "checkpoint_item_id", "example")
    return ["", "Top errors", *_grid(header, rows, numeric={1, 2})]


def _rejected_lines(report: Report) -> list[str]:
    total = len(report.rejected)
    if not total:
        return []
    shown = report.rejected[:_TABLE_REJECTED]
    which = "" if total == len(shown) else f", the first {len(shown)} (--format json lists all)"
    return ["", f"Rejected manifest rows: {total}{which}", *(f"  {row}" for row in shown)]


def _summary_lines(report: Report) -> list[str]:
    attempts = ", ".join(f"{n}: {pairs}" for n, pairs in report.attempts.items()) or "-"
    out = [
        "",
        f"Attempts per sent pair: {attempts} (retries: {report.retries})",
        f"Duration of sent pairs: n={report.durations_count}, "
        f"median {_fmt_seconds(report.duration_median_s)}, "
        f"p95 {_fmt_seconds(report.duration_p95_s)}",
    ]
    if report.copy_status:
        copies = ", ".join(f"{status}: {n}" for status, n in report.copy_status.items())
        out.append(f"Copy status (latest per pair): {copies}")
    if report.copy_states:
        states = ", ".join(f"{state}: {n}" for state, n in report.copy_states.items())
        out.append(f"Copies by state: {states}")
    return out


def _shorten(text: str | None, width: int = 60) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def report_dict(report: Report) -> dict[str, Any]:
    """The JSON document of :func:`render_json`, as Python objects.

    Keys (stable; new keys may be added, none removed or renamed)::

        scope        "last" | "all" | a run id
        runs         [{run_id, started_at, finished_at, manifest, source, interrupted, reason,
                       exit_code, requests, retries, duration_s}]
        pairs        number of pairs counted
        totals       {status: pairs} for every status in STATUS_ORDER
        by_region    {region: {status: pairs for every status, "total": pairs}}
        errors       [{error_code, count, example: {error_msg, http_status, checkpoint_item_id}}]
        retries      sum of attempts - 1 over sent pairs
        attempts     {"1": pairs, "2": pairs, ...}
        durations    {count, median_s, p95_s}
        copy_status  {copy status (the service's word): pairs}
        copy_states  {running|success|failed|skipped: pairs}
        rejected     [{manifest, line, field, reason, checkpoint_item_id, destination_region}]
                     every rejected manifest row, once per (manifest, line)
    """
    statuses = report.statuses
    by_region: dict[str, dict[str, int]] = {}
    for region in report.regions:
        row = {status: report.counts.get((region, status), 0) for status in statuses}
        row["total"] = sum(row.values())
        by_region[region] = row
    return {
        "scope": report.scope,
        "runs": [
            {name: getattr(run, name) for name in RunInfo.__dataclass_fields__}
            for run in report.runs
        ],
        "pairs": report.pairs,
        "totals": dict(report.totals),
        "by_region": by_region,
        "errors": [
            {
                "error_code": e.error_code,
                "count": e.count,
                "example": {
                    "error_msg": e.example_msg,
                    "http_status": e.example_http_status,
                    "checkpoint_item_id": e.example_checkpoint_item_id,
                },
            }
            for e in report.errors
        ],
        "retries": report.retries,
        "attempts": {str(n): pairs for n, pairs in report.attempts.items()},
        "durations": {
            "count": report.durations_count,
            "median_s": report.duration_median_s,
            "p95_s": report.duration_p95_s,
        },
        "copy_status": dict(report.copy_status),
        "copy_states": dict(report.copy_states),
        "rejected": [
            {name: getattr(row, name) for name in RejectedRow.__dataclass_fields__}
            for row in report.rejected
        ],
    }


def render_json(report: Report) -> str:
    """The report as one indented JSON document; keys are listed in :func:`report_dict`."""
    return orjson.dumps(report_dict(report), option=orjson.OPT_INDENT_2).decode() + "\n"


def render_csv(report: Report) -> str:
    """``destination_region,status,count``: one row per region x status, zeros included, so a
    spreadsheet pivot always finds every column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("destination_region", "status", "count"))
    for region in report.regions:
        for status in report.statuses:
            writer.writerow(csv_row((region, status, report.counts.get((region, status), 0))))
    return buffer.getvalue()


# -- the manifest of pairs to send again -----------------------------------------------------
