"""``plan`` and ``run --dry-run``: what a run would do, per destination region, sending nothing.

For ``run --discover --dry-run`` the pairs are the discovered ones (:func:`plan_tasks`); the
report is the same, with ``manifest`` null.

The plan is the same two-pass :class:`~orchestrator.engine.plan.Plan` the run uses, with the same
ledger and ``--retry-failed`` (so the numbers agree by construction), plus two things only a
look at the service can tell:

* **unsupported destinations**: every (source region, destination region) route of the pairs
  to send is checked against ``GET /replication_capabilities``. A row's source region is its
  ``source_region`` column, else ``--region``; a row with neither is checked against every
  source region the service lists (it is sent to the configured endpoint, whose region we do
  not know). A source region missing from the first answer is asked at its own endpoint.
  Unsupported pairs are still *to send* (a run would send them and record the refusal); they
  are counted again under ``unsupported``.
* **an estimate** of the run's length: one request's latency from the capabilities call, and
  the configured limits: ``max(pairs / rate, pairs * latency / parallelism, busiest region's
  pairs * latency / per_region)``. It assumes no retries.

Nothing is sent and the ledger is only read. The plan's GETs (capabilities, CBR's destination
vaults) go at the pace the ``--state-file`` knows for their endpoint and project, and what they
learned is saved back to it, as ``discover`` does (see ``docs/pace.md``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.cli.vault_check import VaultCheck, check_vaults, vault_lines
from orchestrator.config.settings import RunSettings
from orchestrator.engine.endpoint_keys import plan_endpoints_note
from orchestrator.engine.job import refuse_same_file
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.plan import Plan, require_rows
from orchestrator.engine.plan_decision import RegionCounts
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.history import History
from orchestrator.models import ReplicationTask
from orchestrator.safe_text import for_terminal
from orchestrator.service.connect import Connection
from orchestrator.service.preflight import patience, preflight

__all__ = [
    "PlanReport",
    "estimate_seconds",
    "launch_plan",
    "plan_report",
    "plan_tasks",
    "print_plan",
    "render_plan",
]

_SHOWN_PROBLEMS = 20


@dataclass(slots=True)
class PlanReport:
    manifest: str | None  # None: the pairs were discovered
    ledger: str | None
    regions: dict[str, dict[str, Any]]
    totals: dict[str, int]
    unsupported_regions: list[str] = field(default_factory=list)
    unsupported_routes: list[dict[str, Any]] = field(default_factory=list)
    capabilities_checked: bool = False
    invalid_rows: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)
    #: CBR: destination vaults asked (0: none), whether at their regions' own endpoints, and
    #: what was wrong with them or could not be checked (see :mod:`orchestrator.cli.vault_check`).
    vaults_checked: int = 0
    vault_region_checked: bool | None = None
    vault_problems: list[dict[str, Any]] = field(default_factory=list)
    vaults_unchecked: list[dict[str, Any]] = field(default_factory=list)
    #: What may be wrong without being a problem of a row (an endpoints key no row uses).
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Every valid row can be sent: no invalid rows, conflicts, unsupported regions or
        wrong destination vaults."""
        t = self.totals
        return not (t["invalid"] or t["conflicts"] or t["unsupported"] or self.vault_problems)

    def add_vaults(self, check: VaultCheck) -> None:
        self.vaults_checked = check.asked
        self.vault_region_checked = check.region_checked if check.asked else None
        self.vault_problems = check.problems
        self.vaults_unchecked = check.unchecked


def estimate_seconds(
    by_region: Mapping[str, int], settings: RunSettings, latency_s: float | None
) -> float | None:
    """Lower bound of a run's length at the configured limits, without retries."""
    pairs = sum(by_region.values())
    if not pairs:
        return 0.0
    bounds = [pairs / settings.limits.rate] if settings.limits.rate > 0 else []
    if latency_s is not None:
        parallel = min(settings.limits.concurrency, settings.limits.per_region * len(by_region))
        bounds.append(pairs * latency_s / parallel)
        bounds.append(max(by_region.values()) * latency_s / settings.limits.per_region)
    return max(bounds) if bounds else None


Route = tuple[str | None, str]  # (source region or None, destination region)


def plan_report(
    plan: Plan,
    *,
    manifest: str | None,
    ledger: str | None,
    settings: RunSettings,
    unsupported: Mapping[Route, int] | None,
    latency_s: float | None,
) -> PlanReport:
    """The plan per destination region. ``unsupported``: pairs to send per route the service
    cannot replicate (None: capabilities not checked)."""
    refused: dict[str, int] = {}
    for (_, region), count in (unsupported or {}).items():
        refused[region] = refused.get(region, 0) + count
    regions: dict[str, dict[str, Any]] = {}
    totals = RegionCounts()
    for region in sorted(plan.by_region):
        counts = plan.by_region[region]
        totals.add(counts)
        regions[region] = {
            **asdict(counts),
            # A pair the service would refuse is not "to send": it is counted as unsupported.
            "to_send": counts.to_send - refused.get(region, 0),
            "unsupported": refused.get(region, 0),
            "supported": None if unsupported is None else not refused.get(region),
        }
    totals.invalid += plan.invalid_unplaced
    sending = {
        r: c.to_send - refused.get(r, 0)
        for r, c in plan.by_region.items()
        if c.to_send - refused.get(r, 0) > 0
    }
    totals.to_send -= sum(refused.values())
    seconds = estimate_seconds(sending, settings, latency_s)
    return PlanReport(
        manifest=manifest,
        ledger=ledger,
        regions=regions,
        totals={**asdict(totals), "unsupported": sum(refused.values())},
        unsupported_regions=sorted(refused),
        unsupported_routes=[
            {"source_region": source, "destination_region": dest, "pairs": count}
            for (source, dest), count in sorted(
                (unsupported or {}).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
            )
        ],
        capabilities_checked=unsupported is not None,
        invalid_rows=[_row_problem(row) for row in plan.rejected[:_SHOWN_PROBLEMS]],
        conflicts=[_conflict(c) for c in plan.conflicts[:_SHOWN_PROBLEMS]],
        estimate={
            "requests": sum(sending.values()),
            "seconds": None if seconds is None else round(seconds, 1),
            "latency_sample_s": None if latency_s is None else round(latency_s, 4),
            "rate": settings.limits.rate,
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
    ("unsupported", "unsupported"),
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
    lines += [f"note: {note}" for note in report.notes]
    est = report.estimate
    seconds = est["seconds"]
    if seconds is None:
        when = "unknown"
    elif seconds < 1 and est["requests"]:
        when = "under 1s"
    else:
        when = f"~{seconds:.0f}s"
    note = "no retries assumed"
    if not est.get("rate") and est["requests"]:
        note += "; no --rate set: the service's own rate limit, unknown here, may make it longer"
    lines.append(f"estimate: {est['requests']} requests, {when} at the configured limits ({note})")
    # Regions, ids and reasons come from the manifest: no escape codes to the terminal.
    return "\n".join(for_terminal(line, 1000) for line in lines) + "\n"


def _supported(value: bool | None, report: PlanReport) -> str:
    if value is None or not report.capabilities_checked:
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
    lines += [
        f"unsupported: {r['pairs']} pairs from {r['source_region'] or 'any source'} to "
        f"{r['destination_region']} would be refused (no replication capability)"
        for r in report.unsupported_routes
    ]
    check = VaultCheck(
        report.vaults_checked,
        bool(report.vault_region_checked),
        report.vault_problems,
        report.vaults_unchecked,
    )
    return lines + vault_lines(check)


def launch_plan(ctx: Context, *, manifest: Path, as_json: bool) -> int:
    """Print the plan; exit 0 when every row can be sent, 3 when some would not be."""
    report = anyio.run(_plan, ctx, manifest)
    return print_plan(report, as_json, sys.stdout)


def print_plan(report: PlanReport, as_json: bool, out: TextIO) -> int:
    """Print the plan as a table or JSON; the exit code: 0 when every row can be sent, 3 when
    some would not be."""
    if as_json:
        out.write(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render_plan(report))
    out.flush()
    return ExitCode.OK if report.clean else ExitCode.FAILED


async def plan_tasks(
    conn: Connection,
    tasks: Sequence[ReplicationTask],
    *,
    ledger: Path | None,
    retry_failed: bool,
    pacing: Pacing | None = None,
) -> PlanReport:
    """The plan of discovered pairs, checked against the service like a manifest's (at
    ``pacing``'s pace: the discovery's, else the state file's)."""

    def build() -> Plan:
        return Plan.from_tasks(tasks, history=_history(ledger), retry_failed=retry_failed)

    plan = await anyio.to_thread.run_sync(build)
    routes = await anyio.to_thread.run_sync(plan.routes)
    pacing = pacing or Pacing.from_settings(conn.settings)
    unsupported, latency = await _check_routes(conn, routes, pacing) if routes else ({}, None)
    return plan_report(
        plan,
        manifest=None,
        ledger=str(ledger) if ledger else None,
        settings=conn.settings,
        unsupported=unsupported,
        latency_s=latency,
    )


def _history(ledger: Path | None) -> History | None:
    """What the ledger says, as far as a plan needs it; None without a ledger."""
    if ledger is None or not ledger.exists():
        return None
    return History.load(ledger, record_ids=False)


async def _plan(ctx: Context, manifest: Path) -> PlanReport:
    args, settings = ctx.args, ctx.settings
    ledger = Path(args.ledger) if getattr(args, "ledger", None) else None
    if ledger is not None:
        refuse_same_file(manifest, ledger)
    history = _history(ledger)
    retry_failed = bool(getattr(args, "retry_failed", False))

    def build(project_id: str | None) -> Plan:
        plan = Plan.from_manifest(
            manifest,
            default_project_id=project_id,
            history=history,
            retry_failed=retry_failed,
            service=settings.connection.service,
        )
        if not getattr(args, "allow_empty", False):
            require_rows(plan, str(manifest))
        return plan

    unsupported: dict[Route, int] | None = None
    latency: float | None = None
    vaults: VaultCheck | None = None
    if getattr(args, "offline", False):
        plan = await anyio.to_thread.run_sync(build, settings.connection.project_id)
    else:
        async with connect(ctx) as conn:
            settings = conn.settings  # --simulate fills in the endpoint and a project
            # Its GETs at the pace the state file knows, and what they learned saved back
            # for the run (a plan sends nothing, but it does draw on the gateway's budget).
            pacing = Pacing.from_settings(settings)
            plan = await anyio.to_thread.run_sync(build, settings.connection.project_id)
            routes = await anyio.to_thread.run_sync(plan.routes)
            unsupported, latency = (
                await _check_routes(conn, routes, pacing) if routes else ({}, None)
            )
            if settings.connection.service == "cbr" and routes:
                destinations = await anyio.to_thread.run_sync(plan.destinations)
                vaults = await check_vaults(conn, destinations, pacing=pacing)
            pacing.save()
    report = plan_report(
        plan,
        manifest=str(manifest),
        ledger=str(ledger) if ledger else None,
        settings=settings,
        unsupported=unsupported,
        latency_s=latency,
    )
    if vaults is not None:
        report.add_vaults(vaults)
    # The configured table (ctx's: --simulate replaces it with its own), as a run warns of it.
    note = await anyio.to_thread.run_sync(plan_endpoints_note, ctx.settings, plan)
    if note is not None:
        report.notes.append(note)
    return report


async def _check_routes(
    conn: Connection, routes: Mapping[Route, tuple[int, str]], pacing: Pacing
) -> tuple[dict[Route, int], float]:
    """Pairs to send per route the service cannot replicate, and one call's latency."""
    default = conn.settings.connection.region
    project_of = {source or default: project for (source, _), (_, project) in routes.items()}
    first: str | None = default if default in project_of else next(iter(project_of))
    async with conn.client() as opened:
        client = pacing.wrap(opened)
        started = time.monotonic()
        # The first call is the preflight: unreachable, refused or not CSBS stops here.
        caps = await preflight(
            client, project_of[first], region=first, give_up_after=patience(conn.settings)
        )
        latency = time.monotonic() - started
        for region in sorted(r for r in project_of if r is not None and r not in caps):
            # A regional endpoint may list only its own region: ask the source's own.
            answer = await client.capabilities(project_of[region], region=region)
            caps[region] = answer.get(region, [])
    anywhere = {d for dests in caps.values() for d in dests}
    unsupported: dict[Route, int] = {}
    for (source, dest), (count, _) in routes.items():
        origin = source or default
        if dest not in (anywhere if origin is None else caps.get(origin, ())):
            unsupported[origin, dest] = unsupported.get((origin, dest), 0) + count
    return unsupported, latency
