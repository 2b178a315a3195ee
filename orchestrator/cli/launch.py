"""From parsed arguments to a running job: output, the job, its summary and metrics.

The CLI parses, :mod:`orchestrator.cli.context` reads the config file, the environment and
the secrets once; this module wires: where logs and progress go, the job, its summary and
metrics. Everything it builds is handed down explicitly (no globals).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import anyio
import structlog
from rich.console import Console

from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.cli.planning import launch_plan
from orchestrator.cli.vault_check import vault_vetter
from orchestrator.config.settings import RunSettings
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobResult, JobSpec
from orchestrator.engine.live import RunSnapshot, Watcher
from orchestrator.engine.plan import Plan
from orchestrator.engine.progress import NullProgress, Progress, make_progress
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.metrics import Family, RunMetrics, publish_live, write_textfile
from orchestrator.insight.report import build_report
from orchestrator.ledger.file import iter_records
from orchestrator.ledger.format import UNKNOWN, StopReason
from orchestrator.safe_text import for_terminal
from orchestrator.service.client import CsbsClient

__all__ = [
    "launch_job",
    "live_watcher",
    "open_output",
    "print_summary",
    "write_run_metrics",
]

log = structlog.get_logger("orchestrator.cli.launch")


@dataclass(frozen=True, slots=True)
class Output:
    console: Console
    live: bool  # a terminal that shows rich output (logs through the console, live progress)

    def progress(self, wanted: bool) -> Progress:
        if not wanted:
            return NullProgress()
        return make_progress(self.live, console=self.console if self.live else None)


def open_output(ctx: Context) -> Output:
    """Configure logging so that logs and the progress display never share a stream badly.

    The log redactor scrubs with the context's secrets: the very set the client adds the
    tokens it learns to (:func:`connect`)."""
    args = ctx.args
    console = Console(stderr=True)
    # is_interactive: a terminal that can redraw (not TERM=dumb); a dumb one gets log events.
    live = console.is_interactive and args.log_format != "json"
    configure_logging(
        fmt=args.log_format,
        level=args.log_level,
        log_file=args.log_file,
        secrets=ctx.secrets,
        console=console if live else None,
    )
    return Output(console, live)


def launch_job(ctx: Context, *, manifest: Path) -> int:
    """``run`` and ``resume``: the whole job, then a summary on stdout."""
    args, settings = ctx.args, ctx.settings
    output = open_output(ctx)
    try:
        if args.dry_run:
            return launch_plan(ctx, manifest=manifest, as_json=args.json)
        spec = JobSpec(
            ledger=Path(args.ledger),
            settings=settings,
            manifest=manifest,
            strict=args.strict,
            retry_failed=args.retry_failed,
            expect_manifest_sha256=getattr(args, "expect_manifest_sha256", None),
            allow_empty=getattr(args, "allow_empty", False),
            watch=live_watcher(settings),
        )
        progress = output.progress(not args.no_progress)
        result = anyio.run(_job, ctx, spec, progress)
        write_run_metrics(result, spec)
        print_summary(result, spec.ledger, sys.stdout)
        return result.exit_code
    finally:
        close_logging()


async def _job(ctx: Context, spec: JobSpec, progress: Progress) -> JobResult:
    async with connect(ctx, spec.settings) as conn:
        factory: Callable[[], AbstractAsyncContextManager[CsbsClient]] = conn.client
        vet = vault_vetter(conn, spec.manifest)
        spec = replace(spec, settings=conn.settings, vet_plan=vet)
        return await run_job(spec, factory, progress=progress)


def live_watcher(settings: RunSettings) -> Watcher | None:
    """Rewrites ``--metrics-file`` every 30 s while the run goes on; None without one."""
    path = settings.run.metrics_file
    if path is None:
        return None

    async def watch(snapshot: Callable[[], RunSnapshot]) -> None:
        await publish_live(path, snapshot)

    return watch


def write_run_metrics(result: JobResult, spec: JobSpec, *, extra: Sequence[Family] = ()) -> None:
    """The Prometheus textfile of the run, when ``metrics_file`` is set; ``extra``: more
    gauges in the same file (``schedule --coverage``)."""
    path = spec.settings.run.metrics_file
    if path is None:
        return
    report = build_report(iter_records(spec.ledger), run=result.run_id)
    metrics = RunMetrics.from_report(report, finished_at=time.time())
    try:
        write_textfile(path, replace(metrics, pace=result.stats.pace), extra=extra)
    except OSError as exc:
        # Metrics never stop a run (as the live rewrites): the run's exit code and summary
        # stand; the operator learns which file could not be written, and why.
        log.warning("metrics.failed", path=str(path), error=exc.strerror or str(exc))


_VERDICT = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "done, with permanent failures (see `report`)",
    ExitCode.GAVE_UP: "done, some pairs gave up on transient errors: run `resume` later",
    ExitCode.THRESHOLD: "stopped: too many permanent failures (failure threshold)",
    ExitCode.INTERRUPTED: "interrupted: run `resume` to finish",
    ExitCode.AUTH: "stopped: the service refused the credentials",
}


def _verdict(result: JobResult) -> str:
    if result.stats.stop_reason == StopReason.UNREACHABLE:
        return "stopped: no request could connect to the service"
    if result.stats.stop_reason == StopReason.MANIFEST_CHANGED:
        return (
            "stopped: the manifest changed during the run (nothing read after the change was "
            "sent); restore it and `resume`, or `resume --replan`"
        )
    return _VERDICT.get(result.exit_code, "finished")


def _problem_lines(plan: Plan) -> list[str]:
    """The manifest's invalid rows and conflicts, the first few: what to fix, where."""
    total = plan.problem_count
    if not total:
        return []
    shown = plan.problems()
    which = "" if total == len(shown) else f" (the first {len(shown)} of {total})"
    lines = [f"manifest rows not sent{which}; `report` lists every rejected row:"]
    return lines + [f"  {problem}" for problem in shown]


def pace_lines(pace: Mapping[str, Mapping[str, float | int | None]]) -> list[str]:
    """One line per endpoint/project the service throttled: what rate it allowed."""
    lines = []
    for key, p in sorted(pace.items()):
        if p.get("limit") is None:
            continue
        lines.append(
            f"pace {key}: the service allowed {p['limit']:.1f} requests/s "
            f"({p['throttled']} of {int(p['accepted'] or 0) + int(p['throttled'] or 0)} "
            "requests throttled)"
        )
    return lines


def print_summary(result: JobResult, ledger: Path, out: TextIO) -> None:
    counts = result.stats.counts
    parts = [f"{status} {n}" for status, n in sorted(counts.items()) if n]
    if result.rejected:
        parts.append(f"rejected {result.rejected}")
    unknown = result.stats.unknown
    if unknown:
        # As ``report`` counts them: sent, and the stop came before their answer.
        parts.append(f"{UNKNOWN} {unknown} (in flight at the stop)")
    totals = result.plan.totals
    if totals.already_done:
        parts.append(f"already done earlier {totals.already_done}")
    if totals.duplicates:
        parts.append(f"duplicate rows {totals.duplicates}")
    lines = [
        f"{_verdict(result)}: " + (", ".join(parts) or "nothing to do"),
        f"{result.stats.requests} requests, {result.stats.retries} retries, "
        f"{result.duration_s:.1f}s; ledger {ledger} (run {result.run_id})",
    ]
    if unknown:
        lines.append(
            f"{unknown} pair(s) were sent and the run stopped before their answer: the service "
            "may have applied them; `resume` asks it about each before sending again"
        )
    lines += pace_lines(result.stats.pace)
    if result.stats.auth_error:
        lines.append(f"credentials: {result.stats.auth_error}")
    if result.stats.unreachable:
        lines.append(
            f"last error: {result.stats.unreachable}; check --endpoint (or --region) and "
            "the network, then `resume`"
        )
    lines += _problem_lines(result.plan)
    # The credentials and last-error lines quote the service (request ids, messages), the
    # problem lines a manifest: escape codes in them must not reach the terminal.
    out.write("\n".join(for_terminal(line, 1000) for line in lines) + "\n")
    out.flush()
