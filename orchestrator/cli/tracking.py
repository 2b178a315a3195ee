"""``track LEDGER``: the command around :mod:`orchestrator.engine.track`: which service the
ledger's runs used, the connection, and the summary on stdout.

Exit codes: 0 every copy succeeded (or nothing to track), 3 some copies failed, were skipped
or are missing, 6 the deadline passed with copies still running (run ``track`` again later).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final, TextIO

import anyio

from orchestrator.cli.connection import connect
from orchestrator.cli.context import Context
from orchestrator.engine.copies import PendingCopy
from orchestrator.engine.paced_service import Pacing
from orchestrator.engine.track import RUNNING_NAMED, TrackResult, TrackSettings, track_ledger
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import last_record
from orchestrator.service.preflight import patience

__all__ = ["launch_track", "ledger_service", "print_track_summary"]


def launch_track(ctx: Context) -> int:
    """``track LEDGER``: poll until every copy ends (or the deadline); a summary on stdout."""
    args = ctx.args
    options = TrackSettings(
        interval_s=args.interval, deadline_s=args.deadline, concurrency=args.poll_concurrency
    )
    result = anyio.run(_track, ctx, options)
    print_track_summary(result, sys.stdout)
    return result.exit_code


def ledger_service(ledger: Path, asked: str | None) -> str:
    """The service of the ledger's last run (CSBS for ledgers from before ``--service``);
    ``asked`` (an explicit ``--service``) must agree with it."""
    started = last_record(ledger, "run_started") if ledger.exists() else None
    recorded = started.get("settings") if started else None
    service = (recorded.get("service") if isinstance(recorded, dict) else None) or "csbs"
    if asked is not None and asked != service:
        raise ConfigError(
            f"{ledger}: its runs used --service {service}, not {asked}: "
            f"track it with --service {service} (or leave --service out)"
        )
    return str(service)


async def _track(ctx: Context, options: TrackSettings) -> TrackResult:
    args = ctx.args
    service = ledger_service(Path(args.ledger), getattr(args, "service", None))
    settings = replace(ctx.settings, connection=replace(ctx.settings.connection, service=service))
    async with connect(ctx, settings) as conn:
        # The polls go at the pace the service allows each source endpoint and project (the
        # state file's rates to start at, what they teach saved back).
        pacing = Pacing.from_settings(conn.settings)
        result = await track_ledger(
            Path(args.ledger),
            conn.client,
            options,
            preflight_patience=patience(conn.settings),
            pacing=pacing,
        )
        pacing.save()
        return result


_VERDICT: Final = {
    ExitCode.OK: "copies done",
    ExitCode.FAILED: "copies done, some failed or were skipped: "
    "`resume --retry-failed` sends the failed ones again",
    ExitCode.INTERRUPTED: "deadline reached, copies still running: run `track` again later",
}


def print_track_summary(result: TrackResult, out: TextIO) -> None:
    if not result.tracked:
        out.write("nothing to track: no replicated pair is waiting for its copy\n")
        return
    parts = [
        f"{name} {n}"
        for name, n in (
            ("success", result.success),
            ("failed", result.failed),
            ("skipped", result.skipped),
            ("still copying", result.running),
            ("missing", result.missing),
        )
        if n
    ]
    out.write(
        f"{_VERDICT[result.exit_code]}: {', '.join(parts)} "
        f"({result.tracked} tracked, {result.rounds} rounds, {result.lines} ledger lines)\n"
    )
    for line in _still_running_lines(result.still_running):
        out.write(line + "\n")
    out.flush()


def _still_running_lines(pairs: Sequence[PendingCopy]) -> list[str]:
    """The copies still running when tracking stopped: the first few, and how many more."""
    if not pairs:
        return []
    lines = ["still running (item -> destination region, last status):"]
    lines += [
        f"  {p.checkpoint_item_id} -> {p.destination_region} ({p.last_status or 'no status yet'})"
        for p in pairs[:RUNNING_NAMED]
    ]
    if len(pairs) > RUNNING_NAMED:
        lines.append(f"  ... and {len(pairs) - RUNNING_NAMED} more")
    return lines
