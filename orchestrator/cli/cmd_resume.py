"""The `resume` command: finish the last run recorded in a ledger."""

from __future__ import annotations

import argparse

from orchestrator.cli.args import (
    EPILOG,
    add_allow_empty,
    add_connection,
    add_logging,
    add_run_options,
)
from orchestrator.cli.context import context_of

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    resume = sub.add_parser(
        "resume",
        help="finish the last run recorded in a ledger",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resume.add_argument("--ledger", required=True, help="the ledger of the run to finish")
    resume.add_argument(
        "--manifest",
        default=None,
        help="manifest to use instead of the one the ledger recorded (default: the recorded one)",
    )
    resume.add_argument(
        "--replan",
        action="store_true",
        help="plan the manifest as it is now even if its bytes changed since the run being "
        "resumed (default: refuse a changed manifest, exit 2)",
    )
    add_allow_empty(resume)
    add_connection(resume)
    add_run_options(resume)
    add_logging(resume)
    resume.set_defaults(handler=_cmd_resume, strict=False, dry_run=False, json=False)


def _cmd_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import launch_job
    from orchestrator.errors import ConfigError
    from orchestrator.ledger.archive import refuse_compressed
    from orchestrator.ledger.file import last_record

    ledger = Path(args.ledger)
    refuse_compressed(ledger)  # never appended to: decompress it first
    if not ledger.exists():
        raise ConfigError(f"{ledger}: no such ledger; start with `run --manifest ... --ledger`")
    # Only the last run_started: the job folds the whole ledger itself, once.
    started = last_record(ledger, "run_started")
    if started is None:
        raise ConfigError(f"{ledger}: the ledger has no run_started line to resume")
    manifest = args.manifest or started.get("manifest")
    if not manifest:
        raise ConfigError(
            f"{ledger}: the last run discovered its pairs, so there is no manifest to resume: "
            "run `run --discover` with this ledger again (pairs already done are skipped), "
            "or pass --manifest"
        )
    recorded = started.get("settings") or {}
    ctx = context_of(args, recorded if isinstance(recorded, dict) else None)
    _refuse_other_service(ledger, recorded, ctx.settings.connection.service)
    if started.get("source") == "discover":
        args.allow_empty = True  # a discovery that found nothing new is not a mistake
    digest = started.get("manifest_sha256")
    if not args.manifest:
        _require_recorded_manifest(ledger, Path(str(manifest)), pinned=isinstance(digest, str))
    if not args.replan and isinstance(digest, str):
        args.expect_manifest_sha256 = digest
    return launch_job(ctx, manifest=Path(str(manifest)))


def _require_recorded_manifest(ledger: object, manifest: object, *, pinned: bool) -> None:
    """The manifest the ledger recorded was moved or deleted: say which ledger recorded
    which path, and the two ways on (exit 2, nothing sent or recorded)."""
    from pathlib import Path

    from orchestrator.errors import ManifestError

    path = Path(str(manifest))
    if path.exists():
        return
    checked = (
        " (its bytes are checked against the sha256 the run recorded; --replan takes the "
        "file as it is now)"
        if pinned
        else ""
    )
    raise ManifestError(
        str(path),
        None,
        None,
        f"no such file: the ledger {ledger} recorded this manifest for the run being "
        f"resumed. Restore it at that path, or pass its new path: "
        f"`resume --ledger {ledger} --manifest NEW_PATH`{checked}",
    )


def _refuse_other_service(ledger: object, recorded: object, wanted: str) -> None:
    """A ledger's pairs belong to one service: resuming them with another would send CSBS
    item ids to CBR (or the reverse). Ledgers from before ``--service`` were CSBS runs."""
    from orchestrator.errors import ConfigError

    service = (recorded.get("service") if isinstance(recorded, dict) else None) or "csbs"
    if wanted != service:
        raise ConfigError(
            f"{ledger}: the run being resumed used --service {service}, not {wanted}: "
            f"resume it with --service {service} (or leave --service out)"
        )
