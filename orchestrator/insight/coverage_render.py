"""Coverage for people and programs: a table, JSON, CSV, and Prometheus gauges.

The CSV is for spreadsheets, so a cell that a spreadsheet would run as a formula is
neutralised (OWASP's CSV injection advice); issue 21 may bring one shared helper for that.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from orchestrator.insight.coverage import (
    STATE_ORDER,
    Coverage,
    CoverageRow,
    State,
    format_age,
)

__all__ = [
    "CSV_COLUMNS",
    "coverage_dict",
    "metric_families",
    "render_csv",
    "render_json",
    "render_table",
    "row_dict",
]

CSV_COLUMNS: Final = (
    "project_id",
    "source_region",
    "resource_id",
    "resource_name",
    "destination_region",
    "state",
    "newest_backup_id",
    "newest_backup_at",
    "copied_backup_id",
    "copied_backup_at",
    "lag_s",
    "reason",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def row_dict(row: CoverageRow) -> dict[str, Any]:
    return {
        "project_id": row.project_id,
        "source_region": row.source_region,
        "resource_id": row.resource_id,
        "resource_name": row.resource_name,
        "destination_region": row.destination_region,
        "state": str(row.state),
        "newest_backup_id": row.newest_backup_id,
        "newest_backup_at": _iso(row.newest_backup_at),
        "copied_backup_id": row.copied_backup_id,
        "copied_backup_at": _iso(row.copied_backup_at),
        "lag_s": None if row.lag_s is None else round(row.lag_s, 1),
        "reason": row.reason,
    }


def coverage_dict(coverage: Coverage) -> dict[str, Any]:
    worst = coverage.worst_lag()
    return {
        "generated_at": _iso(coverage.now),
        "rpo_s": coverage.rpo_s,
        "all_covered": coverage.all_covered,
        "regions": {
            region: {
                "states": {str(s): n for s, n in counts.items()},
                "worst_lag_s": None if worst[region] is None else round(worst[region] or 0, 1),
            }
            for region, counts in coverage.counts().items()
        },
        "rows": [row_dict(row) for row in coverage.rows],
    }


def render_json(coverage: Coverage) -> str:
    return orjson.dumps(coverage_dict(coverage), option=orjson.OPT_INDENT_2).decode() + "\n"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(coverage: Coverage) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in coverage.rows:
        values = row_dict(row)
        writer.writerow([_cell(values[name]) for name in CSV_COLUMNS])
    return out.getvalue()


def _grid(headers: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]


def _printable(text: str, width: int = 70) -> str:
    """One line, no control characters (a resource name is user data), at most ``width``."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= width else clean[: width - 3] + "..."


def render_table(coverage: Coverage, *, worst: int = 15) -> str:
    counts = coverage.counts()
    lags = coverage.worst_lag()
    lines = [
        f"coverage at {_iso(coverage.now)}, RPO {coverage.rpo_s / 3600:g}h: "
        f"{len(coverage.rows)} resource x region pairs",
        "",
    ]
    headers = ("region", *(str(s) for s in STATE_ORDER), "worst lag")
    lines += _grid(
        headers,
        (
            (region, *(str(counts[region][s]) for s in STATE_ORDER), format_age(lags[region]))
            for region in coverage.regions()
        ),
    )
    exposed = coverage.worst(worst)
    if exposed:
        lines += ["", f"worst {len(exposed)} (not covered):"]
        lines += _grid(
            ("resource", "region", "state", "lag", "reason"),
            (
                (
                    _printable(r.resource_name or r.resource_id, 30),
                    r.destination_region,
                    str(r.state),
                    format_age(r.lag_s),
                    _printable(r.reason),
                )
                for r in exposed
            ),
        )
    verdict = (
        "no protected resource: no backup matched a destination rule"
        if not coverage.rows
        else "every resource is covered"
        if coverage.all_covered
        else f"{sum(r.state is not State.COVERED for r in coverage.rows)} pairs not covered"
    )
    return "\n".join([*lines, "", verdict]) + "\n"


def metric_families(
    coverage: Coverage,
) -> list[tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """(name, help, [(labels, value)]) for the Prometheus textfile (names without prefix)."""
    counts = coverage.counts()
    lags = coverage.worst_lag()
    return [
        (
            "coverage_resources",
            "Protected resources per destination region and coverage state.",
            [
                ({"destination_region": region, "state": str(state)}, float(n))
                for region, by_state in counts.items()
                for state, n in by_state.items()
            ],
        ),
        (
            "coverage_worst_lag_seconds",
            "Age of the oldest newest-copy per destination region (resources holding a copy).",
            [
                ({"destination_region": region}, lag)
                for region, lag in lags.items()
                if lag is not None
            ],
        ),
        (
            "coverage_rpo_seconds",
            "The RPO coverage was judged against.",
            [({}, coverage.rpo_s)],
        ),
        (
            "coverage_timestamp_seconds",
            "When coverage was last measured (Unix time).",
            [({}, coverage.now)],
        ),
    ]
