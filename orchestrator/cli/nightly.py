"""Discovery and the nightly schedule, wired: ``discover``, ``run --discover``, ``schedule``.

:mod:`orchestrator.discovery` knows how to turn the estate into pairs and
:mod:`orchestrator.scheduling` when to fire; this module joins them to a connection, a job
and the output, the way :mod:`orchestrator.cli.launch` does for ``run``. One connection (and,
with ``--simulate``, one simulator) lives as long as the command, so every firing of a
schedule talks to the same service.

Signals: the scheduler watches SIGINT/SIGTERM itself (a job's own watcher would replace
its handler). The first signal stops waiting for the next firing, and stops a running one
gracefully: a discovery in progress is abandoned (nothing was sent), a run stops feeding
and lets in-flight requests finish, and its ledger records the interruption. The second
signal cancels the running pool. The scheduler then exits 0; ``--once`` exits with the
run's own code (6 when interrupted).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import structlog

from orchestrator.cli.connection import Connection, connect
from orchestrator.cli.launch import (
    live_watcher,
    open_output,
    print_summary,
    secrets_of,
    simulator_secrets,
    write_run_metrics,
)
from orchestrator.cli.logs import close_logging
from orchestrator.cli.planning import PlanReport, plan_tasks, print_plan
from orchestrator.cli.vault_check import refuse_wrong_task_vaults, vault_vetter
from orchestrator.config.settings import RunSettings, load_config
from orchestrator.discovery.discover import Discovery, discover
from orchestrator.discovery.manifest_out import write_manifest
from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.engine.job import JobResult, JobSpec, run_job
from orchestrator.engine.pool import Pool
from orchestrator.engine.progress import NullProgress, Progress
from orchestrator.engine.retry import RetryPolicy
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.metrics import Family
from orchestrator.ledger.format import StopReason
from orchestrator.safe_text import for_terminal
from orchestrator.scheduling.clock import Clock, SleepUntil, utc_now
from orchestrator.scheduling.cron import CronSchedule
from orchestrator.scheduling.firing import Firing, FiringSkipped
from orchestrator.scheduling.missed import MissedRunPolicy
from orchestrator.scheduling.retention import ledger_path_for, prune_ledgers
from orchestrator.scheduling.scheduler import Scheduler, fire_now
from orchestrator.service.preflight import patience, preflight

__all__ = [
    "DEFAULT_KEEP",
    "Nightly",
    "ScheduleOptions",
    "discover_config",
    "launch_discover",
    "launch_discovered_run",
    "launch_schedule",
    "run_schedule",
]

log = structlog.get_logger("orchestrator.cli.nightly")

#: Command-line filter -> the discovery filter it sets.
_FILTER_FLAGS = {
    "filter_status": "status",
    "filter_resource_type": "resource_type",
    "filter_name": "name",
    "filter_policy_id": "policy_id",
    "filter_since": "created_since",
}
DEFAULT_KEEP = 14

ConfigFor = Callable[[datetime], DiscoverConfig]


# --------------------------------------------------------------------------- settings


def discover_config(
    args: argparse.Namespace, settings: RunSettings, config: Mapping[str, Any], now: datetime
) -> DiscoverConfig:
    """``[discover]`` of the config file with the command-line filters and ``--to`` on top.

    ``now`` anchors a relative ``created_since`` (``36h``): each firing passes its own.
    """
    default = None
    if settings.project_id and settings.region:
        default = Source(settings.project_id.lower(), settings.region)
    base = DiscoverConfig.from_config(
        config,
        default_source=default,
        now=now,
        path=getattr(args, "config", None),
        service=settings.service,
    )
    filters = {key: getattr(args, flag, None) for flag, key in _FILTER_FLAGS.items()}
    result = base.with_overrides(
        filters=filters,
        to=getattr(args, "to", None) or (),
        now=now,
        select=getattr(args, "select", None),
    )
    page_size = getattr(args, "page_size", None)
    if page_size is not None:
        result = replace(result, page_size=page_size)
    result.check()
    return result


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """``schedule`` flags over the ``[schedule]`` table of the config file."""

    cron: str | None
    tz: str | None
    state_dir: Path
    keep: int
    policy: MissedRunPolicy
    once: bool = False
    retry_failed: bool = False
    coverage_rpo_s: float | None = None
    """``--coverage``: each firing ends with coverage at this RPO (None: off)."""

    @classmethod
    def resolve(cls, args: argparse.Namespace, config: Mapping[str, Any]) -> ScheduleOptions:
        section = config.get("schedule", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{args.config}: [schedule] must be a table")

        def pick(flag: str, key: str, default: Any = None) -> Any:
            value = getattr(args, flag, None)
            return value if value is not None else section.get(key, default)

        state_dir = pick("state_dir", "state_dir")
        if not state_dir:
            raise ConfigError("schedule: --state-dir (or [schedule] state_dir) is required")
        keep = pick("keep", "keep_ledgers", DEFAULT_KEEP)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ConfigError(f"schedule keep_ledgers {keep!r}: must be at least 1")
        once = bool(getattr(args, "once", False))
        cron, tz = pick("cron", "cron"), pick("tz", "timezone")
        if not once and (not cron or not tz):
            raise ConfigError(
                "schedule: --cron and --tz (or [schedule] cron and timezone) are required "
                "unless --once"
            )
        policy = MissedRunPolicy.from_config(
            str(pick("missed_runs", "missed_runs", "run_once")),
            max_lateness_s=float(pick("max_lateness", "max_lateness", 12 * 3600)),
        )
        retry_failed = bool(getattr(args, "retry_failed", False))
        rpo = None
        if getattr(args, "coverage", False) or section.get("coverage", False) is True:
            from orchestrator.cli.coverage import parse_duration  # noqa: PLC0415 - it imports us

            rpo = parse_duration(str(pick("rpo", "rpo", "26h")), what="schedule rpo")
        return cls(cron, tz, Path(state_dir), keep, policy, once, retry_failed, rpo)

    def schedule(self) -> CronSchedule:
        if self.cron is None or self.tz is None:
            raise ConfigError("schedule: --cron and --tz are required unless --once")
        return CronSchedule(self.cron, self.tz)


# --------------------------------------------------------------------------- discover


async def discover_with(conn: Connection, config: DiscoverConfig) -> Discovery:
    async with conn.client() as client:
        if config.sources:  # unreachable, refused or not CSBS: one request, not a listing's retries
            first = config.sources[0]
            await preflight(
                client, first.project_id, region=first.region, give_up_after=patience(conn.settings)
            )
        return await discover(client, config, retry=RetryPolicy.from_settings(conn.settings))


def _print_discovery(discovery: Discovery, out: TextIO, done: str = "written") -> None:
    for summary in discovery.summaries:
        out.write(for_terminal(summary.line(done), 1000) + "\n")
    out.flush()


def launch_discover(args: argparse.Namespace, settings: RunSettings) -> int:
    """``discover``: list, match, skip what is done, write the manifest, one line per source."""
    env = os.environ
    open_output(args, secrets_of(settings, env, simulator_secrets(args)))
    try:
        config = load_config(args.config)

        async def main() -> Discovery:
            async with connect(args, settings, env) as conn:
                dconfig = discover_config(args, conn.settings, config, utc_now())
                found = await discover_with(conn, dconfig)
                await refuse_wrong_task_vaults(conn, found.tasks)  # CBR: before it is written
                return found

        discovery = anyio.run(main)
        count = write_manifest(discovery.tasks, args.output, service=settings.service)
        _print_discovery(discovery, sys.stdout)
        print(f"wrote {count} pairs to {args.output}")
        return ExitCode.OK
    finally:
        close_logging()


def launch_discovered_run(args: argparse.Namespace, settings: RunSettings) -> int:
    """``run --discover``: discover, then run the pairs found, in one connection."""
    env = os.environ
    output = open_output(args, secrets_of(settings, env, simulator_secrets(args)))
    try:
        config = load_config(args.config)
        progress = output.progress(not args.no_progress and not args.dry_run)

        async def main() -> PlanReport | tuple[JobSpec, JobResult]:
            async with connect(args, settings, env) as conn:
                dconfig = discover_config(args, conn.settings, config, utc_now())
                discovery = await discover_with(conn, dconfig)
                # With --json, stdout holds the plan document alone.
                _print_discovery(
                    discovery,
                    sys.stderr if args.json else sys.stdout,
                    "found (dry run: none written or sent)" if args.dry_run else "to send",
                )
                ledger = Path(args.ledger)
                if args.dry_run:
                    return await plan_tasks(
                        conn, discovery.tasks, ledger=ledger, retry_failed=args.retry_failed
                    )
                # Saved as a manifest next to the ledger, so that `resume` can replay it.
                saved = discovered_manifest(ledger)
                write_manifest(discovery.tasks, saved, service=conn.settings.service)
                spec = JobSpec(
                    ledger=ledger,
                    settings=conn.settings,
                    manifest=saved,
                    source="discover",
                    strict=args.strict,
                    retry_failed=args.retry_failed,
                    watch=live_watcher(conn.settings),
                    vet_plan=vault_vetter(conn, saved, discovered=True),
                )
                return spec, await run_job(spec, conn.client, progress=progress)

        outcome = anyio.run(main)
        if isinstance(outcome, PlanReport):
            return print_plan(outcome, args.json, sys.stdout)
        spec, result = outcome
        write_run_metrics(result, spec)
        print_summary(result, spec.ledger, sys.stdout)
        return result.exit_code
    finally:
        close_logging()


def discovered_manifest(ledger: Path) -> Path:
    """Where ``run --discover`` saves the pairs it found: beside the ledger, named after it."""
    return ledger.with_name(f"{ledger.stem}.discovered.csv")


# --------------------------------------------------------------------------- schedule


class Nightly:
    """The job of one firing: discover -> run -> report, into the firing's dated ledger.

    Also the stop switch for signals (see the module docstring).
    """

    def __init__(
        self,
        conn: Connection,
        config_for: ConfigFor,
        *,
        state_dir: Path,
        keep: int,
        out: TextIO,
        progress: Progress | None = None,
        retry_failed: bool = False,
        coverage_rpo_s: float | None = None,
    ) -> None:
        self._conn = conn
        self._retry_failed = retry_failed
        self._coverage_rpo_s = coverage_rpo_s
        self._config_for = config_for
        self._state_dir = state_dir
        self._keep = keep
        self._out = out
        self._progress = progress or NullProgress()
        self.scheduler: Scheduler | None = None
        self._stopping = False
        self._discovery: anyio.CancelScope | None = None
        self._pool: Pool | None = None

    def stop(self, why: str = "signal") -> None:
        """First call: stop gracefully; a second one cancels the running pool."""
        again, self._stopping = self._stopping, True
        log.warning("nightly.stopping", why=why, again=again)
        if self.scheduler is not None:
            self.scheduler.request_stop()
        if self._discovery is not None:
            self._discovery.cancel()
        if self._pool is not None:
            if again:
                self._pool.cancel()
            else:
                # The ledger says "signal" whatever stopped us: that is the reason resume and the
                # exit code know (6), the signal's own name is in the log line above.
                self._pool.request_stop(StopReason.SIGNAL)

    async def __call__(self, firing: Firing) -> int:
        ledger = ledger_path_for(firing, self._state_dir)
        discovery = await self._discover(firing)
        if discovery is None:
            self._write(f"firing {_stamp(firing)}: stopped before anything was sent")
            return ExitCode.INTERRUPTED
        self._write(f"firing {_stamp(firing)}{' (catch-up)' if firing.catch_up else ''}:")
        _print_discovery(discovery, self._out)
        spec = JobSpec(
            ledger=ledger,
            settings=self._conn.settings,
            tasks=discovery.tasks,
            retry_failed=self._retry_failed,
            handle_signals=False,
            on_pool=self._attach,
            watch=live_watcher(self._conn.settings),
        )
        try:
            result = await run_job(spec, self._conn.client, progress=self._progress)
        finally:
            self._pool = None
        print_summary(result, ledger, self._out)
        extra = await self._coverage(firing) if not self._stopping else []
        await anyio.to_thread.run_sync(lambda: write_run_metrics(result, spec, extra=extra))
        removed = await anyio.to_thread.run_sync(
            lambda: prune_ledgers(self._state_dir, self._keep, in_use=ledger)
        )
        if removed:
            log.info("nightly.pruned", ledgers=[p.name for p in removed])
        return result.exit_code

    async def _discover(self, firing: Firing) -> Discovery | None:
        if self._stopping:
            return None
        config = self._config_for(firing.fired_at)
        with anyio.CancelScope() as scope:
            self._discovery = scope
            try:
                return await discover_with(self._conn, config)
            finally:
                self._discovery = None
        return None  # cancelled by stop()

    async def _coverage(self, firing: Firing) -> list[Family]:
        """``--coverage``: judge the estate after the run, print the table, return the gauges
        for the run's metrics file. Its gaps do not change the firing's exit code; a listing
        failure is logged and leaves the run's own metrics alone."""
        if self._coverage_rpo_s is None:
            return []
        from orchestrator.cli.coverage import for_coverage, load_facts, measure  # noqa: PLC0415
        from orchestrator.insight.coverage_render import (  # noqa: PLC0415
            metric_families,
            render_table,
        )

        dated = [
            *self._state_dir.glob("ledger-*.jsonl"),
            *self._state_dir.glob("ledger-*.jsonl.gz"),
        ]
        ledgers = sorted(dated, key=lambda p: p.name.removesuffix(".gz"))
        try:
            facts = await anyio.to_thread.run_sync(load_facts, ledgers)
            config = for_coverage(self._config_for(firing.fired_at))
            coverage = await measure(self._conn, config, facts, rpo_s=self._coverage_rpo_s)
        except (OrchestratorError, OSError) as exc:
            log.error("nightly.coverage_failed", error=str(exc))  # noqa: TRY400 - expected
            self._write(f"coverage: not measured: {exc}")
            return []
        self._out.write(render_table(coverage))
        self._out.flush()
        return list(metric_families(coverage))

    def _attach(self, pool: Pool) -> None:
        self._pool = pool
        if self._stopping:  # a signal came between discovery and the pool's start
            pool.request_stop(StopReason.SIGNAL)

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


def _stamp(firing: Firing) -> str:
    return f"{firing.scheduled:%Y-%m-%dT%H:%MZ}"


async def run_schedule(
    conn: Connection,
    config_for: ConfigFor,
    options: ScheduleOptions,
    *,
    out: TextIO,
    clock: Clock = utc_now,
    sleep_until: SleepUntil | None = None,
    max_firings: int | None = None,
    handle_signals: bool = True,
) -> int:
    """Fire on the schedule until stopped (exit 0), or once with ``options.once`` (the
    run's exit code; 0 when another firing holds the lock)."""
    nightly = Nightly(
        conn,
        config_for,
        state_dir=options.state_dir,
        keep=options.keep,
        out=out,
        retry_failed=options.retry_failed,
        coverage_rpo_s=options.coverage_rpo_s,
    )
    async with anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(_watch_signals, nightly)
        if options.once:
            event = await fire_now(nightly, state_dir=options.state_dir, clock=clock)
            code = _once_code(event, out)
        else:
            scheduler = Scheduler(
                options.schedule(),
                nightly,
                state_dir=options.state_dir,
                policy=options.policy,
                clock=clock,
                sleep_until=sleep_until,
            )
            nightly.scheduler = scheduler
            await scheduler.run(max_firings=max_firings)
            code = ExitCode.OK
        tg.cancel_scope.cancel()
    return code


def _once_code(event: object, out: TextIO) -> int:
    if isinstance(event, FiringSkipped):
        out.write(f"skipped: {event.detail}\n")
        out.flush()
        return ExitCode.OK
    code = getattr(event, "exit_code", None)
    return int(code) if code is not None else ExitCode.INTERNAL


async def _watch_signals(nightly: Nightly) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            nightly.stop(signal.Signals(signum).name)


def launch_schedule(args: argparse.Namespace, settings: RunSettings) -> int:
    """``schedule``: long-running (or ``--once``), one dated ledger per firing."""
    env = os.environ
    config = load_config(args.config)
    options = ScheduleOptions.resolve(args, config)
    if not options.once:
        options.schedule()  # a bad cron or zone is a usage error before anything starts
    open_output(args, secrets_of(settings, env, simulator_secrets(args)))
    try:

        async def main() -> int:
            async with connect(args, settings, env) as conn:
                # Checked before the first firing, not hours later.
                discover_config(args, conn.settings, config, utc_now())

                def config_for(now: datetime) -> DiscoverConfig:
                    return discover_config(args, conn.settings, config, now)

                return await run_schedule(conn, config_for, options, out=sys.stdout)

        return anyio.run(main)
    finally:
        close_logging()
