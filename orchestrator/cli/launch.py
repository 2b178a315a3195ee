"""From parsed arguments to a running job: output, the job, its summary and metrics.

The CLI parses; this module wires. It is the only place that reads the process environment
for credentials, decides where logs and progress go, and starts the embedded simulator for
``--simulate``. Everything it builds is handed down explicitly (no globals).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import anyio
import structlog
from rich.console import Console

from orchestrator.cli.connection import connect, simulator_config
from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.cli.planning import launch_plan
from orchestrator.cli.vault_check import vault_vetter
from orchestrator.config.settings import RunSettings
from orchestrator.engine.job import JobResult, JobSpec, run_job
from orchestrator.engine.live import RunSnapshot, Watcher
from orchestrator.engine.plan import Plan
from orchestrator.engine.progress import NullProgress, Progress, make_progress
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.metrics import Family, RunMetrics, publish_live, write_textfile
from orchestrator.insight.report import build_report
from orchestrator.ledger.file import iter_records
from orchestrator.ledger.format import StopReason
from orchestrator.safe_text import for_terminal
from orchestrator.secret_set import SecretSet
from orchestrator.service.client import CsbsClient

__all__ = [
    "launch_job",
    "live_watcher",
    "open_output",
    "print_summary",
    "secrets_of",
    "simulator_secrets",
    "write_run_metrics",
]

log = structlog.get_logger("orchestrator.cli.launch")

_SECRET_ENV = (
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "CSBS_AUTH_TOKEN",
    "CSBS_IAM_PASSWORD",
)


def secrets_of(
    settings: RunSettings, env: Mapping[str, str], extra: Iterable[str] = ()
) -> list[str]:
    """Every secret value this process knows, for the log redactor."""
    values = [env.get(name, "") for name in _SECRET_ENV]
    values += [settings.iam_password or "", *extra]
    return [v for v in values if v]


@dataclass(frozen=True, slots=True)
class Output:
    console: Console
    live: bool  # a terminal that shows rich output (logs through the console, live progress)

    def progress(self, wanted: bool) -> Progress:
        if not wanted:
            return NullProgress()
        return make_progress(self.live, console=self.console if self.live else None)


def open_output(args: argparse.Namespace, secrets: Iterable[str]) -> Output:
    """Configure logging so that logs and the progress display never share a stream badly.

    The secrets become one :class:`SecretSet`, kept on ``args.secret_set`` for
    :func:`connect`: the client adds the tokens it learns to the very set the log redactor
    scrubs with."""
    known = SecretSet(secrets)
    args.secret_set = known
    console = Console(stderr=True)
    # is_interactive: a terminal that can redraw (not TERM=dumb); a dumb one gets log events.
    live = console.is_interactive and args.log_format != "json"
    configure_logging(
        fmt=args.log_format,
        level=args.log_level,
        log_file=args.log_file,
        secrets=known,
        console=console if live else None,
    )
    return Output(console, live)


def launch_job(args: argparse.Namespace, settings: RunSettings, *, manifest: Path) -> int:
    """``run`` and ``resume``: the whole job, then a summary on stdout."""
    env = os.environ
    extra = simulator_secrets(args)
    output = open_output(args, secrets_of(settings, env, extra))
    try:
        if args.dry_run:
            return launch_plan(args, settings, manifest=manifest, as_json=args.json)
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
        result = anyio.run(_job, args, spec, env, progress)
        write_run_metrics(result, spec)
        print_summary(result, spec.ledger, sys.stdout)
        return result.exit_code
    finally:
        close_logging()


def simulator_secrets(args: argparse.Namespace) -> list[str]:
    """The simulator's own credentials (with ``--simulate``), for the log redactor."""
    if not getattr(args, "simulate", False):
        return []
    config = simulator_config(args)
    return [config.sk, config.password]


async def _job(
    args: argparse.Namespace, spec: JobSpec, env: Mapping[str, str], progress: Progress
) -> JobResult:
    async with connect(args, spec.settings, env) as conn:
        factory: Callable[[], AbstractAsyncContextManager[CsbsClient]] = conn.client
        vet = vault_vetter(conn, spec.manifest)
        spec = replace(spec, settings=conn.settings, vet_plan=vet)
        return await run_job(spec, factory, progress=progress)


def live_watcher(settings: RunSettings) -> Watcher | None:
    """Rewrites ``--metrics-file`` every 30 s while the run goes on; None without one."""
    path = settings.metrics_file
    if path is None:
        return None

    async def watch(snapshot: Callable[[], RunSnapshot]) -> None:
        await publish_live(path, snapshot)

    return watch


def write_run_metrics(result: JobResult, spec: JobSpec, *, extra: Sequence[Family] = ()) -> None:
    """The Prometheus textfile of the run, when ``metrics_file`` is set; ``extra``: more
    gauges in the same file (``schedule --coverage``)."""
    path = spec.settings.metrics_file
    if path is None:
        return
    report = build_report(iter_records(spec.ledger), run=result.run_id)
    metrics = RunMetrics.from_report(report, finished_at=time.time())
    write_textfile(path, replace(metrics, pace=result.stats.pace), extra=extra)


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
