"""The `report` command: summarise a ledger."""

from __future__ import annotations

import argparse
import sys

from orchestrator.exitcodes import ExitCode

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report", help="summarise a ledger: per region and status, top errors, durations"
    )
    report.add_argument(
        "ledger",
        metavar="LEDGER",
        nargs="+",
        help="the ledger(s) to read; with several (one per account or shard), 'last' means the "
        "last run of each",
    )
    report.add_argument("--run", default="last", help="'last', 'all' or a run id (default: last)")
    report.add_argument(
        "--format",
        choices=("table", "json", "csv", "html"),
        default="table",
        help="html: one self-contained page with charts (default: table)",
    )
    report.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="FILE",
        help="write the report here (default: stdout)",
    )
    report.add_argument(
        "--failed-manifest",
        default=None,
        metavar="FILE",
        help="also write the failed and gave-up pairs as a manifest to run again (default: none)",
    )
    report.add_argument(
        "--pairs",
        default=None,
        metavar="FILE.csv",
        help="also write one CSV row per pair: ids, regions, final status, record id, error, "
        "attempts, copy status (default: none)",
    )
    report.add_argument(
        "--include",
        default="failed,gave_up",
        help="statuses for --failed-manifest: failed, gave_up, rejected, unknown, copy_failed "
        "(a copy that failed or that the service skipped) (default: failed,gave_up)",
    )
    report.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.errors import ConfigError
    from orchestrator.insight.failed_manifest import check_include, write_failed_manifest
    from orchestrator.insight.ledgers import selected_records
    from orchestrator.insight.report import build_report
    from orchestrator.insight.report_render import render_csv, render_json, render_table

    ledgers = [Path(p) for p in args.ledger]
    for ledger in ledgers:
        if not ledger.exists():
            raise ConfigError(f"{ledger}: no such ledger")
    # Every option is checked before anything is printed.
    include = check_include(part.strip() for part in args.include.split(",") if part.strip())
    records, run = selected_records(ledgers, args.run)
    report = build_report(records(), run=run)
    if args.format == "html":
        from orchestrator.insight.ledgers import html_report

        text = html_report(report, records())
    else:
        text = {"table": render_table, "json": render_json, "csv": render_csv}[args.format](report)
    _write_output(text, args.output)
    if args.failed_manifest:
        count = write_failed_manifest(records(), args.failed_manifest, run=run, include=include)
        print(f"wrote {count} pairs to {args.failed_manifest}", file=sys.stderr)
    if args.pairs:
        from orchestrator.insight.pairs import write_pairs

        count = write_pairs(records, args.pairs, run=run)
        print(f"wrote {count} pairs to {args.pairs}", file=sys.stderr)
    return ExitCode.OK


def _write_output(text: str, output: str | None) -> None:
    from pathlib import Path

    from orchestrator.atomic_file import replace_file
    from orchestrator.errors import ConfigError

    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        replace_file(Path(output), text.encode())
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror}") from None
