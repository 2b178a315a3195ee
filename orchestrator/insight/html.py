"""One self-contained HTML file with charts, for ``report --format html`` and
``coverage --format html``.

Charts are drawn by plotly (a well-kept library: figures as data, rendered by plotly.js in the
browser). The plotly.js runtime is inlined once per page (``include_plotlyjs=True``, about
4.5 MB), so the file opens with no network: nothing is loaded from a CDN. Every text that
comes from the ledger or the service (resource names, error messages) is HTML-escaped; plotly
escapes what it draws itself.

The run timeline is a fold over the ledger's lines, bucketed by tenth of a second, so memory
grows with the run's length (at most ten buckets a second per series) and the number of sent
pairs' durations (8 bytes each).
What the ledger can show over time: results (per region and status) by their ``finished_at``,
requests by their ``attempt`` lines, retries (``attempt`` > 1), and the final HTTP status of
each result (a 429/503 that a retry overcame leaves only its retry behind).
"""

from __future__ import annotations

import html
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import plotly.graph_objects as go

from orchestrator.insight.coverage import STATE_ORDER, Coverage, State, format_age
from orchestrator.insight.coverage_input import parse_time
from orchestrator.insight.report_model import Report
from orchestrator.insight.report_render import report_dict
from orchestrator.ledger.format import LedgerEvent

__all__ = ["Timeline", "coverage_html", "report_html"]

_MAX_BINS: Final = 240
_TICKS: Final = 10  # buckets per second
_STATE_COLOURS: Final = {
    State.COVERED: "#2ca02c",
    State.RUNNING: "#1f77b4",
    State.STALE: "#ff7f0e",
    State.FAILING: "#d62728",
    State.MISSING: "#7f7f7f",
}
_CSS: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left}th{background:#f4f4f4}.chart{max-width:1100px}.note{color:#666;font-size:.85rem}
"""


class Timeline:
    """Counts per tenth of a second of one or more runs, fed ledger lines one by one."""

    def __init__(self, runs: Iterable[str] | None = None) -> None:
        self._runs = None if runs is None else frozenset(runs)
        self.results: Counter[tuple[int, str, str]] = Counter()  # (second, region, status)
        self.requests: Counter[int] = Counter()
        self.retries: Counter[int] = Counter()
        self.throttled: Counter[tuple[int, int]] = Counter()  # (second, 429 or 503)
        self.durations = array("d")

    def feed(self, record: Mapping[str, Any]) -> None:
        if self._runs is not None and record.get("run_id") not in self._runs:
            return
        event = record.get("event")
        if event == LedgerEvent.ATTEMPT:
            at = parse_time(record.get("ts"))
            if at is not None:
                tick = int(at * _TICKS)
                self.requests[tick] += 1
                attempt = record.get("attempt")
                if isinstance(attempt, int) and attempt > 1:
                    self.retries[tick] += 1
        elif event == LedgerEvent.RESULT:
            self._result(record)

    def _result(self, record: Mapping[str, Any]) -> None:
        at = parse_time(record.get("finished_at")) or parse_time(record.get("ts"))
        status = str(record.get("status"))
        if at is None or status == "rejected":
            return
        second = int(at * _TICKS)
        self.results[second, str(record.get("destination_region") or "-"), status] += 1
        http_status = record.get("http_status")
        if http_status in (429, 503):
            self.throttled[second, int(http_status)] += 1
        duration = record.get("duration_s")
        attempts = record.get("attempts")
        if isinstance(duration, int | float) and isinstance(attempts, int) and attempts >= 1:
            self.durations.append(float(duration))

    def span(self) -> tuple[int, int] | None:
        seconds = [s for s, _, _ in self.results] + list(self.requests)
        return (min(seconds), max(seconds)) if seconds else None


def _bins(span: tuple[int, int]) -> tuple[int, int]:
    """(first tick, ticks per bin): at most _MAX_BINS bins over the span."""
    start, end = span
    width = max(1, -(-(end - start + 1) // _MAX_BINS))
    return start, width


def _x(start: int, width: int, index: int) -> datetime:
    return datetime.fromtimestamp((start + index * width) / _TICKS, UTC)


def _series(
    counts: Mapping[int, int], start: int, width: int, bins: int, *, per_second: bool = False
) -> tuple[list[datetime], list[float]]:
    values = [0.0] * bins
    for second, n in counts.items():
        values[(second - start) // width] += n
    if per_second:
        values = [v * _TICKS / width for v in values]
    return [_x(start, width, i) for i in range(bins)], values


def _layout(fig: go.Figure, title: str, y: str, x: str = "time (UTC)") -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _timeline_figures(timeline: Timeline) -> list[go.Figure]:
    span = timeline.span()
    if span is None:
        return []
    start, width = _bins(span)
    bins = (span[1] - start) // width + 1
    unit = f"per {width / _TICKS:g} s"
    results = go.Figure()
    labels = sorted({(region, status) for _, region, status in timeline.results})
    for region, status in labels:
        counts = {
            s: n for (s, r, st), n in timeline.results.items() if r == region and st == status
        }
        xs, ys = _series(counts, start, width, bins)
        results.add_bar(x=xs, y=ys, name=f"{region} {status}")
    results.update_layout(barmode="stack")
    rate = go.Figure()
    xs, ys = _series(timeline.requests, start, width, bins, per_second=True)
    rate.add_scatter(x=xs, y=ys, mode="lines+markers", name="requests/s")
    done = Counter[int]()
    for (second, _, _), n in timeline.results.items():
        done[second] += n
    xs, ys = _series(done, start, width, bins, per_second=True)
    rate.add_scatter(x=xs, y=ys, mode="lines+markers", name="results/s")
    trouble = go.Figure()
    xs, ys = _series(timeline.retries, start, width, bins)
    trouble.add_scatter(x=xs, y=ys, mode="lines+markers", name="retries")
    for code in (429, 503):
        counts = {s: n for (s, c), n in timeline.throttled.items() if c == code}
        xs, ys = _series(counts, start, width, bins)
        trouble.add_scatter(x=xs, y=ys, mode="lines+markers", name=f"final HTTP {code}")
    durations = go.Figure()
    durations.add_histogram(x=list(timeline.durations), nbinsx=50, name="pairs")
    return [
        _layout(results, f"Results per destination region and status ({unit})", "pairs"),
        _layout(rate, "Request rate", "per second"),
        _layout(trouble, f"Retries and final 429/503 ({unit})", "count"),
        _layout(durations, "Duration of sent pairs", "pairs", "seconds"),
    ]


def _page(title: str, summary: str, figures: Sequence[go.Figure], tail: str = "") -> str:
    charts = []
    for index, fig in enumerate(figures):
        charts.append(
            '<div class="chart">'
            + fig.to_html(full_html=False, include_plotlyjs=index == 0, config={"responsive": True})
            + "</div>"
        )
    if not figures:
        charts.append('<p class="note">Nothing to chart.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{summary}{''.join(charts)}{tail}</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: Report, records: Iterable[Mapping[str, Any]]) -> str:
    """The report's figures and the timeline of its runs (``records``: the same ledger lines,
    read again)."""
    timeline = Timeline(run.run_id for run in report.runs)
    for record in records:
        timeline.feed(record)
    data = report_dict(report)
    totals = ", ".join(f"{k} {v}" for k, v in report.totals.items() if v) or "no pairs"
    summary = (
        f"<p>{len(report.runs)} run(s), {report.pairs} pairs: {html.escape(totals)}; "
        f"{report.retries} retries.</p>"
    )
    errors = _table(
        ("error code", "count", "example"),
        ((e["error_code"], e["count"], e.get("example_msg") or "") for e in data["errors"]),
    )
    tail = f"<h2>Top errors</h2>{errors}" if report.errors else ""
    return _page("csbs-orchestrator report", summary, _timeline_figures(timeline), tail)


def _coverage_figures(coverage: Coverage) -> list[go.Figure]:
    regions = list(coverage.regions())
    counts = coverage.counts()
    states = go.Figure()
    for state in STATE_ORDER:
        states.add_bar(
            x=regions,
            y=[counts[r][state] for r in regions],
            name=str(state),
            marker_color=_STATE_COLOURS[state],
        )
    states.update_layout(barmode="stack")
    lags = go.Figure()
    for region in regions:
        hours = [
            r.lag_s / 3600
            for r in coverage.rows
            if r.destination_region == region and r.lag_s is not None
        ]
        lags.add_box(y=hours, name=region, boxpoints="outliers")
    lags.add_hline(y=coverage.rpo_s / 3600, line_dash="dash", annotation_text="RPO")
    worst = [r for r in coverage.worst(25) if r.lag_s is not None][::-1]
    bars = go.Figure()
    bars.add_bar(
        x=[r.lag_s / 3600 for r in worst if r.lag_s is not None],
        y=[f"{r.resource_name or r.resource_id} → {r.destination_region}" for r in worst],
        orientation="h",
        marker_color=[_STATE_COLOURS[r.state] for r in worst],
    )
    bars.add_vline(x=coverage.rpo_s / 3600, line_dash="dash")
    return [
        _layout(states, "Resources per destination region and state", "resources", "region"),
        _layout(lags, "Lag of the newest copy per destination region", "hours", "region"),
        _layout(bars, "Worst resources holding a copy (lag)", "", "hours").update_layout(
            height=max(380, 22 * len(worst) + 120)
        ),
    ]


def coverage_html(coverage: Coverage, *, worst: int = 50) -> str:
    not_covered = sum(r.state is not State.COVERED for r in coverage.rows)
    stamp = datetime.fromtimestamp(coverage.now, UTC).isoformat(timespec="seconds")
    summary = (
        f"<p>At {stamp}, RPO {coverage.rpo_s / 3600:g} h: {len(coverage.rows)} resource x "
        f"region pairs, {not_covered} not covered.</p>"
    )
    rows = coverage.worst(worst)
    table = _table(
        ("resource", "region", "state", "lag", "reason"),
        (
            (
                r.resource_name or r.resource_id,
                r.destination_region,
                r.state,
                format_age(r.lag_s),
                r.reason,
            )
            for r in rows
        ),
    )
    tail = f"<h2>Worst {len(rows)} (not covered)</h2>{table}" if rows else ""
    return _page("csbs-orchestrator coverage", summary, _coverage_figures(coverage), tail)
