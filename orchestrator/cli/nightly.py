"""The nightly schedule wired: ``schedule``, one dated ledger per firing.

:mod:`orchestrator.scheduling` knows when to fire and :mod:`orchestrator.cli.discovering`
how to discover; this module joins them to a connection, a job and the output. One
connection (and, with ``--simulate``, one simulator) lives as long as the command, so every
firing of a schedule talks to the same service.

Signals: the scheduler watches SIGINT/SIGTERM itself (a job's own watcher would replace
its handler). The first signal stops waiting for the next firing, and stops a running one
gracefully: a discovery in progress is abandoned (nothing was sent), a run stops feeding
and lets in-flight requests finish, and its ledger records the interruption. The second
signal cancels the running pool. The scheduler then exits 0; ``--once`` exits with the
run's own code (6 when interrupted).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

import anyio
import structlog

from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.cli.discovering import discover_config, discover_with, print_discovery
from orchestrator.cli.launch import live_watcher, open_output, print_summary, write_run_metrics
from orchestrator.cli.logs import close_logging
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.discovery.discover import Discovery
from orchestrator.discovery.rules import DiscoverConfig
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobSpec
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.pool import Pool
from orchestrator.engine.progress import NullProgress, Progress
from orchestrator.errors import OrchestratorError
from orchestrator.exitcodes import ExitCode
from orchestrator.insight.metrics import Family
from orchestrator.ledger.format import StopReason
from orchestrator.scheduling.clock import Clock, SleepUntil, utc_now
from orchestrator.scheduling.firing import Firing, FiringSkipped
from orchestrator.scheduling.retention import ledger_path_for, prune_ledgers
from orchestrator.scheduling.scheduler import Scheduler, fire_now
from orchestrator.service.connect import Connection

__all__ = ["Nightly", "launch_schedule", "run_schedule"]

log = structlog.get_logger("orchestrator.cli.nightly")

ConfigFor = Callable[[datetime], DiscoverConfig]


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
        #: The look-ups' pace, for every step of every firing: discovery, the run (which
        #: starts at it), coverage; saved to the state file after each firing.
        self._pacing = Pacing.from_settings(conn.settings)

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
        print_discovery(discovery, self._out)
        spec = JobSpec(
            ledger=ledger,
            settings=self._conn.settings,
            tasks=discovery.tasks,
            retry_failed=self._retry_failed,
            handle_signals=False,
            on_pool=self._attach,
            watch=live_watcher(self._conn.settings),
            pacing=self._pacing,
        )
        try:
            result = await run_job(spec, self._conn.client, progress=self._progress)
        finally:
            self._pool = None
        print_summary(result, ledger, self._out)
        extra = await self._coverage(firing) if not self._stopping else []
        self._pacing.save()  # (a small file, as the run saves its own)
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
                return await discover_with(self._conn, config, self._pacing)
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
            coverage = await measure(
                self._conn, config, facts, rpo_s=self._coverage_rpo_s, pacing=self._pacing
            )
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


def launch_schedule(ctx: Context) -> int:
    """``schedule``: long-running (or ``--once``), one dated ledger per firing."""
    args = ctx.args
    options = ScheduleOptions.resolve(args, ctx.config)
    if not options.once:
        options.schedule()  # a bad cron or zone is a usage error before anything starts
    open_output(ctx)
    try:

        async def main() -> int:
            async with connect(ctx) as conn:
                # Checked before the first firing, not hours later.
                discover_config(args, conn.settings, ctx.config, utc_now())

                def config_for(now: datetime) -> DiscoverConfig:
                    return discover_config(args, conn.settings, ctx.config, now)

                return await run_schedule(conn, config_for, options, out=sys.stdout)

        return anyio.run(main)
    finally:
        close_logging()
