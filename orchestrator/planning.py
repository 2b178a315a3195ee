"""``plan`` and ``run --dry-run``: what a run would do, per destination region, sending nothing.

The plan is the same two-pass :class:`~orchestrator.plan.Plan` the run uses (so the numbers
agree by construction), plus two things only a look at the service can tell: destination
regions the source cannot replicate to (``GET /replication_capabilities``), and an estimate of
the run's length. The estimate takes one request's latency from that capabilities call and
applies the configured limits: ``max(pairs / rate, pairs * latency / parallelism,
busiest region's pairs * latency / per_region)``. It assumes no retries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.history import History
from orchestrator.launch import Connection, connect
from orchestrator.plan import Plan, RegionCounts
from orchestrator.settings import RunSettings

__all__ = ["PlanReport", "estimate_seconds", "launch_plan", "plan_report", "render_plan"]

_SHOWN_PROBLEMS = 20


@dataclass(slots=True)
class PlanReport:
    manifest: str
    ledger: str | None
    regions: dict[str, dict[str, Any]]
    totals: dict[str, int]
    unsupported_regions: list[str] = field(default_factory=list)
    capabilities_checked: bool = False
    invalid_rows: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Every valid row can be sent: no invalid rows, conflicts or unsupported regions."""
        t = self.totals
        return not (t["invalid"] or t["conflicts"] or t["unsupported"])


def estimate_seconds(
    by_region: Mapping[str, int], settings: RunSettings, latency_s: float | None
) -> float | None:
    """Lower bound of a run's length at the configured limits, without retries."""
    pairs = sum(by_region.values())
    if not pairs:
        return 0.0
    bounds = [pairs / settings.rate] if settings.rate > 0 else []
    if latency_s is not None:
        parallel = min(settings.concurrency, settings.per_region * len(by_region))
        bounds.append(pairs * latency_s / parallel)
        bounds.append(max(by_region.values()) * latency_s / settings.per_region)
    return max(bounds) if bounds else None


def plan_report(
    plan: Plan,
    *,
    manifest: str,
    ledger: str | None,
    settings: RunSettings,
    supported: set[str] | None,
    latency_s: float | None,
) -> PlanReport:
    regions: dict[str, dict[str, Any]] = {}
    totals = RegionCounts()
    unsupported_rows = 0
    for region in sorted(plan.by_region):
        counts = plan.by_region[region]
        totals.add(counts)
        ok = supported is None or region in supported
        unsupported_rows += 0 if ok else counts.to_send
        regions[region] = {**asdict(counts), "supported": ok}
    totals.invalid += plan.invalid_unplaced
    sending = {r: c.to_send for r, c in plan.by_region.items() if c.to_send}
    seconds = estimate_seconds(sending, settings, latency_s)
    return PlanReport(
        manifest=manifest,
        ledger=ledger,
        regions=regions,
        totals={**asdict(totals), "unsupported": unsupported_rows},
        unsupported_regions=sorted(r for r, v in regions.items() if not v["supported"]),
        capabilities_checked=supported is not None,
        invalid_rows=[_row_problem(row) for row in plan.rejected[:_SHOWN_PROBLEMS]],
        conflicts=[_conflict(c) for c in plan.conflicts[:_SHOWN_PROBLEMS]],
        estimate={
            "requests": sum(sending.values()),
            "seconds": None if seconds is None else round(seconds, 1),
            "latency_sample_s": None if latency_s is None else round(latency_s, 4),
        },
    )


def _row_problem(row: Any) -> dict[str, Any]:
    return {"file": row.path, "line": row.line, "field": row.field, "reason": row.reason}


def _conflict(conflict: Any) -> dict[str, Any]:
    project_id, item_id, region = conflict.key
    return {
        "checkpoint_item_id": item_id,
        "project_id": project_id,
        "destination_region": region,
        "lines": list(conflict.lines),
        "destination_project_ids": list(conflict.destination_project_ids),
    }


_COLUMNS = (
    ("to_send", "to send"),
    ("already_done", "done"),
    ("skipped_failed", "failed earlier"),
    ("duplicates", "duplicates"),
    ("conflicts", "conflicts"),
    ("invalid", "invalid"),
)


def render_plan(report: PlanReport) -> str:
    header = ("region", *(title for _, title in _COLUMNS), "supported")
    rows = [
        (region, *(str(v[key]) for key, _ in _COLUMNS), _supported(v["supported"], report))
        for region, v in report.regions.items()
    ]
    rows.append(("total", *(str(report.totals[key]) for key, _ in _COLUMNS), ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *rows]
    ]
    lines += _problem_lines(report)
    est = report.estimate
    when = "unknown" if est["seconds"] is None else f"~{est['seconds']:.0f}s"
    lines.append(
        f"estimate: {est['requests']} requests, {when} at the configured limits "
        "(no retries assumed)"
    )
    return "\n".join(lines) + "\n"


def _supported(value: bool, report: PlanReport) -> str:
    if not report.capabilities_checked:
        return "unchecked"
    return "yes" if value else "NO"


def _problem_lines(report: PlanReport) -> list[str]:
    lines = [
        f"invalid: {p['file']}:{p['line']}: {p['field'] or '-'}: {p['reason']}"
        for p in report.invalid_rows
    ]
    lines += [
        f"conflict: lines {', '.join(map(str, c['lines']))}: {c['checkpoint_item_id']} -> "
        f"{c['destination_region']} with projects {', '.join(c['destination_project_ids'])}"
        for c in report.conflicts
    ]
    if report.unsupported_regions:
        lines.append(
            "unsupported destination regions (rows would be refused): "
            + ", ".join(report.unsupported_regions)
        )
    return lines


def launch_plan(
    args: argparse.Namespace, settings: RunSettings, *, manifest: Path, as_json: bool
) -> int:
    """Print the plan; exit 0 when every row can be sent, 3 when some would not be."""
    report = anyio.run(_plan, args, settings, manifest)
    _print(report, as_json, sys.stdout)
    return ExitCode.OK if report.clean else ExitCode.FAILED


def _print(report: PlanReport, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render_plan(report))
    out.flush()


async def _plan(args: argparse.Namespace, settings: RunSettings, manifest: Path) -> PlanReport:
    ledger = Path(args.ledger) if getattr(args, "ledger", None) else None
    history = History.load(ledger) if ledger is not None and ledger.exists() else None
    supported: set[str] | None = None
    latency: float | None = None
    if not getattr(args, "offline", False):
        async with connect(args, settings, os.environ) as conn:
            settings = conn.settings
            supported, latency = await _capabilities(conn)
    plan = await anyio.to_thread.run_sync(
        lambda: Plan.from_manifest(
            manifest, default_project_id=settings.project_id, history=history
        )
    )
    return plan_report(
        plan,
        manifest=str(manifest),
        ledger=str(ledger) if ledger else None,
        settings=settings,
        supported=supported,
        latency_s=latency,
    )


async def _capabilities(conn: Connection) -> tuple[set[str], float]:
    """Destinations reachable from the configured source region (all sources if none)."""
    project = conn.settings.project_id
    if not project:
        raise ConfigError("checking capabilities needs --project-id (or use --offline)")
    async with conn.client() as client:
        started = time.monotonic()
        caps = await client.capabilities(project, region=conn.settings.region)
        latency = time.monotonic() - started
    sources = [conn.settings.region] if conn.settings.region in caps else list(caps)
    return {d for s in sources for d in caps.get(s, [])}, latency
