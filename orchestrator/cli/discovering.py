"""Discovery wired to a connection and the output: ``discover`` and ``run --discover``.

:mod:`orchestrator.discovery` knows how to turn the estate into pairs; this module joins it
to the command's context (the ``[discover]`` table of the config file read once, the
command-line filters on top), a connection and, for ``run --discover``, a job, the way
:mod:`orchestrator.cli.launch` does for ``run``. ``schedule`` (:mod:`orchestrator.cli.nightly`)
discovers through :func:`discover_with` at each firing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio

from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.cli.launch import live_watcher, open_output, print_summary, write_run_metrics
from orchestrator.cli.logs import close_logging
from orchestrator.cli.planning import PlanReport, plan_tasks, print_plan
from orchestrator.cli.vault_check import refuse_wrong_task_vaults, vault_vetter
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.discover import Discovery, discover
from orchestrator.discovery.manifest_out import write_manifest
from orchestrator.discovery.rules import DiscoverConfig
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobResult, JobSpec
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.retry import RetryPolicy
from orchestrator.exitcodes import ExitCode
from orchestrator.safe_text import for_terminal
from orchestrator.scheduling.clock import utc_now
from orchestrator.service.connect import Connection
from orchestrator.service.preflight import patience, preflight

__all__ = [
    "discover_config",
    "discover_with",
    "discovered_manifest",
    "launch_discover",
    "launch_discovered_run",
    "print_discovery",
]

#: Command-line filter -> the discovery filter it sets.
_FILTER_FLAGS = {
    "filter_status": "status",
    "filter_resource_type": "resource_type",
    "filter_name": "name",
    "filter_policy_id": "policy_id",
    "filter_since": "created_since",
}


def discover_config(
    args: argparse.Namespace, settings: RunSettings, config: Mapping[str, Any], now: datetime
) -> DiscoverConfig:
    """``[discover]`` of the (already read) config file with the command-line filters and
    ``--to`` on top.

    ``now`` anchors a relative ``created_since`` (``36h``): each firing passes its own.
    """
    base = DiscoverConfig.from_settings(
        settings, config, now=now, path=getattr(args, "config", None)
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


async def discover_with(
    conn: Connection, config: DiscoverConfig, pacing: Pacing | None = None
) -> Discovery:
    """Preflight, then list every source; each GET at its endpoint and project's pace."""
    pacing = pacing or Pacing.from_settings(conn.settings)
    async with conn.client() as opened:
        client = pacing.wrap(opened)
        if config.sources:  # unreachable, refused or not CSBS: one request, not a listing's retries
            first = config.sources[0]
            await preflight(
                client, first.project_id, region=first.region, give_up_after=patience(conn.settings)
            )
        return await discover(client, config, retry=RetryPolicy.from_settings(conn.settings))


def print_discovery(discovery: Discovery, out: TextIO, done: str = "written") -> None:
    for summary in discovery.summaries:
        out.write(for_terminal(summary.line(done), 1000) + "\n")
    out.flush()


def launch_discover(ctx: Context) -> int:
    """``discover``: list, match, skip what is done, write the manifest, one line per source."""
    args = ctx.args
    open_output(ctx)
    try:

        async def main() -> Discovery:
            async with connect(ctx) as conn:
                dconfig = discover_config(args, conn.settings, ctx.config, utc_now())
                pacing = Pacing.from_settings(conn.settings)
                found = await discover_with(conn, dconfig, pacing)
                pacing.save()
                await refuse_wrong_task_vaults(conn, found.tasks)  # CBR: before it is written
                return found

        discovery = anyio.run(main)
        count = write_manifest(
            discovery.tasks, args.output, service=ctx.settings.connection.service
        )
        print_discovery(discovery, sys.stdout)
        print(f"wrote {count} pairs to {args.output}")
        return ExitCode.OK
    finally:
        close_logging()


def launch_discovered_run(ctx: Context) -> int:
    """``run --discover``: discover, then run the pairs found, in one connection."""
    args = ctx.args
    output = open_output(ctx)
    try:
        progress = output.progress(not args.no_progress and not args.dry_run)

        async def main() -> PlanReport | tuple[JobSpec, JobResult]:
            async with connect(ctx) as conn:
                dconfig = discover_config(args, conn.settings, ctx.config, utc_now())
                # One pace for the listing and the run: the run starts at what it learned.
                pacing = Pacing.from_settings(conn.settings)
                discovery = await discover_with(conn, dconfig, pacing)
                # With --json, stdout holds the plan document alone.
                print_discovery(
                    discovery,
                    sys.stderr if args.json else sys.stdout,
                    "found (dry run: none written or sent)" if args.dry_run else "to send",
                )
                ledger = Path(args.ledger)
                if args.dry_run:
                    report = await plan_tasks(
                        conn,
                        discovery.tasks,
                        ledger=ledger,
                        retry_failed=args.retry_failed,
                        pacing=pacing,
                    )
                    pacing.save()  # what the listing and the plan's checks learned
                    return report
                # Saved as a manifest next to the ledger, so that `resume` can replay it.
                saved = discovered_manifest(ledger)
                write_manifest(discovery.tasks, saved, service=conn.settings.connection.service)
                spec = JobSpec(
                    ledger=ledger,
                    settings=conn.settings,
                    manifest=saved,
                    source="discover",
                    strict=args.strict,
                    retry_failed=args.retry_failed,
                    watch=live_watcher(conn.settings),
                    pacing=pacing,
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
