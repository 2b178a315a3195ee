"""Command line: parse arguments, configure logging, wire the pieces.

Every command module is imported lazily inside its handler so that ``--help`` stays fast.
Errors from our exception tree become one clear line on stderr and a documented exit code;
a traceback is shown only for a bug, and only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from orchestrator import __version__
from orchestrator.exitcodes import ExitCode

if TYPE_CHECKING:
    from orchestrator.config.settings import RunSettings

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

_EPILOG = """exit codes: 0 ok, 2 usage/config/manifest, 3 some pairs failed, 4 some gave up on
transient errors (resume later), 5 failure threshold tripped, 6 interrupted or --max-duration
reached (resume) or `track --deadline` passed, 7 credentials refused, 8 ledger error,
1 internal error.
precedence: flags > environment > --config file > defaults."""


def _add_logging(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="json off a terminal, readable on one (default: auto)",
    )
    group.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="(default: info)",
    )
    group.add_argument(
        "--log-file", default=None, help="also append JSON log lines to this file (default: none)"
    )
    group.add_argument(
        "--debug", action="store_true", help="show a traceback for unexpected errors (default: off)"
    )


def _add_connection(parser: argparse.ArgumentParser, *, simulate: bool = True) -> None:
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--config", default=None, help="TOML config file, see configs/example.toml (default: none)"
    )
    add_options(group, "connection")  # type: ignore[arg-type]
    if simulate:
        group.add_argument(
            "--simulate",
            action="store_true",
            help="start the embedded CSBS simulator and run against it (default: off)",
        )
        group.add_argument(
            "--sim-seed", type=int, default=1, help="seed of the simulated estate (default: 1)"
        )


def _add_allow_empty(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="a manifest without rows is fine, nothing to do (default: exit 2, 'no rows')",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from orchestrator.cli.options import add_options

    group = parser.add_argument_group("limits, retries and stopping")
    add_options(group, "run")  # type: ignore[arg-type]
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="also re-send pairs whose last result was failed (default: off)",
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display even on a terminal (default: show it)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csbs-orchestrator",
        description="Replicate Huawei Cloud CSBS backups to other regions, in bulk, "
        "with a durable ledger and resume.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="replicate every pair of a manifest",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV or JSON Lines manifest")
    source.add_argument(
        "--discover",
        action="store_true",
        help="list the estate through the API and apply the [discover] rules of --config "
        "instead of reading a manifest (see `discover`)",
    )
    run.add_argument("--ledger", required=True, help="JSON Lines ledger (appended, resumable)")
    run.add_argument(
        "--strict",
        action="store_true",
        help="refuse to send anything if any manifest row is invalid "
        "(default: send the valid rows, record the others as rejected)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="plan only, as `plan` does: send nothing (default: off)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: the plan as one JSON document (default: a table)",
    )
    _add_allow_empty(run)
    _add_connection(run)
    _add_discovery(run)
    _add_run_options(run)
    _add_logging(run)
    run.set_defaults(handler=_cmd_run)

    resume = sub.add_parser(
        "resume",
        help="finish the last run recorded in a ledger",
        epilog=_EPILOG,
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
    _add_allow_empty(resume)
    _add_connection(resume)
    _add_run_options(resume)
    _add_logging(resume)
    resume.set_defaults(handler=_cmd_resume, strict=False, dry_run=False, json=False)

    _add_plan(sub)
    _add_report(sub)
    _add_discover(sub)
    _add_schedule(sub)
    _add_track(sub)
    _add_coverage(sub)
    _add_config(sub)

    simulate = sub.add_parser("simulate", help="serve the embedded CSBS simulator")
    from orchestrator.cli.simulate import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(handler=_cmd_simulate)
    return parser


def _add_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="validate a manifest and show what a run would send, per region (sends nothing)",
        description="Validate and deduplicate the manifest, check destination regions against "
        "the service's replication capabilities and the ledger for pairs already done, and "
        "estimate the run. Exit 0 when every row can be sent, 3 when some would not be.",
    )
    plan.add_argument("--manifest", required=True, help="CSV or JSON Lines manifest")
    plan.add_argument(
        "--ledger", default=None, help="ledger to count pairs already done in (default: none)"
    )
    plan.add_argument("--json", action="store_true", help="one JSON document (default: a table)")
    plan.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the service for its capabilities (default: ask)",
    )
    _add_allow_empty(plan)
    _add_connection(plan)
    _add_run_options(plan)
    _add_logging(plan)
    plan.set_defaults(handler=_cmd_plan)


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_track(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    track = sub.add_parser(
        "track",
        help="follow the copies of replicated pairs until each ends, into the ledger",
        description="Poll the service for the replication record of every pair whose latest "
        "result is replicated until its copy ends (success, fail or skip) or --deadline "
        "passes, appending a copy_status line to the ledger at each change. `resume "
        "--retry-failed` sends the pairs whose copy failed again. Exit 0 when every copy "
        "succeeded, 3 when some failed, were skipped or their record is missing, 6 when the "
        "deadline passed with copies still running (they are named), "
        "7 credentials refused, 8 ledger locked or unwritable.",
    )
    track.add_argument("ledger", metavar="LEDGER", help="the ledger of the runs to follow")
    track.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between two polls of a running copy (default: 60)",
    )
    track.add_argument(
        "--deadline",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="stop after this long, exit 6 if copies still run (default: 86400, a day; "
        "0 = until all end)",
    )
    track.add_argument(
        "--concurrency",
        dest="poll_concurrency",
        type=int,
        default=16,
        metavar="N",
        help="status requests in flight (default: 16)",
    )
    _add_connection(track, simulate=False)
    _add_logging(track)
    track.set_defaults(handler=_cmd_track)


def _add_coverage(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    coverage = sub.add_parser(
        "coverage",
        help="per resource and destination region: the newest copy the region holds, its lag",
        description="List the backups of every [[discover.sources]] entry (or of "
        "--project-id/--region) with their replication records and judge each protected "
        "resource x destination region ([[discover.rules]] of --config, or --region-to): "
        "covered (newest copy within --rpo), stale, missing, failing (with the reason, from "
        "the service and the --ledger files) or running. Exit 0 when every pair is covered, "
        "3 otherwise. See docs/coverage.md.",
    )
    coverage.add_argument(
        "--rpo", required=True, help="recovery point objective: 26h, 1d12h, 90m (required)"
    )
    coverage.add_argument(
        "--region-to",
        action="append",
        default=None,
        metavar="REGION",
        help="destination region to judge (repeatable; replaces [[discover.rules]]; "
        "default: the rules)",
    )
    coverage.add_argument(
        "--ledger",
        action="append",
        default=None,
        metavar="LEDGER",
        help="a ledger whose history explains gaps, or a directory of them (repeatable; "
        "default: none)",
    )
    coverage.add_argument(
        "--format",
        choices=("table", "json", "csv", "html"),
        default="table",
        help="(default: table)",
    )
    coverage.add_argument(
        "--output", "-o", default=None, metavar="FILE", help="write here (default: stdout)"
    )
    coverage.add_argument(
        "--metrics-file",
        dest="coverage_metrics_file",
        default=None,
        metavar="FILE",
        help="write Prometheus gauges here, e.g. for node_exporter (default: none)",
    )
    coverage.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help="judge lags as of this ISO time, UTC if no zone (default: now)",
    )
    coverage.add_argument(
        "--sim-age-days",
        type=int,
        default=None,
        metavar="DAYS",
        help="with --simulate: an estate of daily backups over this many past days (default: "
        "[simulator] age_days)",
    )
    _add_connection(coverage)
    _add_logging(coverage)
    coverage.set_defaults(handler=_cmd_coverage)


def _cmd_coverage(args: argparse.Namespace) -> int:
    from orchestrator.cli.coverage import launch_coverage

    return launch_coverage(args, _settings(args))


def _add_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="check a config file and show the effective settings, each with its source",
        description="`config check`: read --config (unknown sections and keys are errors), "
        "fold it with the flags given here and the environment, and print every setting with "
        "where it came from: flag, environment, file or default. Sends nothing. Exit 0, or 2 "
        "for a config that a run would refuse.",
    )
    config.add_argument("action", choices=("check",), help="what to do: check")
    config.add_argument("--json", action="store_true", help="one JSON document (default: a table)")
    _add_connection(config, simulate=False)
    _add_run_options(config)
    config.set_defaults(handler=_cmd_config)


def _add_discovery(parser: argparse.ArgumentParser) -> None:
    """Filters and a catch-all destination on top of the config's ``[discover]`` table."""
    group = parser.add_argument_group("discovery (over [discover] in --config)")
    group.add_argument(
        "--status",
        dest="filter_status",
        default=None,
        metavar="STATUS",
        help="list items of this status; 'any' for all (default: available)",
    )
    group.add_argument(
        "--resource-type",
        dest="filter_resource_type",
        default=None,
        metavar="TYPE",
        help="only this resource type, e.g. OS::Nova::Server (default: any)",
    )
    group.add_argument(
        "--name",
        dest="filter_name",
        default=None,
        metavar="TEXT",
        help="only items whose name contains this (the service's fuzzy match; default: any)",
    )
    group.add_argument(
        "--policy-id",
        dest="filter_policy_id",
        default=None,
        metavar="ID",
        help="only this backup policy (default: any)",
    )
    group.add_argument(
        "--since",
        dest="filter_since",
        default=None,
        metavar="WHEN",
        help="only items created since an ISO time (UTC if no zone) or an age: 36h, 7d "
        "(default: any)",
    )
    group.add_argument(
        "--to",
        action="append",
        default=None,
        metavar="REGION=PROJECT_ID",
        help="send every listed item there too (repeatable; adds to [[discover.rules]]; "
        "default: none)",
    )
    group.add_argument(
        "--page-size", type=int, default=None, help="items per listing page (default: 1000)"
    )
    group.add_argument(
        "--select",
        choices=("all", "newest"),
        default=None,
        help="all: every available backup lacking a copy; newest: per resource and region only "
        "the newest, when the region holds nothing as new, largest lag first "
        "(default: [discover] select, else all)",
    )


def _add_discover(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    discover = sub.add_parser(
        "discover",
        help="list backups through the API, apply the destination rules, write a manifest",
        description="List the checkpoint items of every [[discover.sources]] entry (or of "
        "--project-id/--region), apply the [[discover.rules]] of --config, skip pairs that "
        "already have a replica or one in progress, and write the rest as a CSV manifest for "
        "`run --manifest`. Prints one summary line per source.",
    )
    discover.add_argument(
        "--output", "-o", required=True, metavar="FILE", help="the CSV manifest to write"
    )
    _add_connection(discover)
    _add_discovery(discover)
    _add_logging(discover)
    discover.set_defaults(handler=_cmd_discover)


def _add_schedule(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule",
        help="run discover -> run -> report on a cron schedule, one dated ledger per firing",
        description="Keep running and fire on a cron expression in an explicit time zone "
        "(no overlap, a missed-run policy); each firing discovers, runs into "
        "<state-dir>/ledger-YYYYMMDDTHHMMZ.jsonl and prints its summary. With --once: fire "
        "now, once, and exit with the run's code (for cron, systemd timers, Kubernetes).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = schedule.add_argument_group("schedule (over [schedule] in --config)")
    group.add_argument(
        "--cron",
        default=None,
        help="five-field cron expression or @daily (default: [schedule] cron of --config)",
    )
    group.add_argument(
        "--tz",
        default=None,
        help="IANA time zone of --cron, e.g. Europe/Berlin (default: [schedule] timezone)",
    )
    group.add_argument(
        "--state-dir",
        default=None,
        help="lock, schedule state and the dated ledgers (default: [schedule] state_dir)",
    )
    group.add_argument("--keep", type=int, default=None, help="dated ledgers to keep (default: 14)")
    group.add_argument(
        "--missed-runs",
        choices=("run_once", "skip"),
        default=None,
        help="after downtime: one catch-up run, or wait for the next time (default: run_once)",
    )
    group.add_argument(
        "--max-lateness",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run_once does not catch up a firing older than this (default: 43200)",
    )
    group.add_argument(
        "--once", action="store_true", help="fire now, once, then exit (default: keep running)"
    )
    group.add_argument(
        "--coverage",
        action="store_true",
        help="end each firing with `coverage`: its table, and its gauges in --metrics-file "
        "(default: [schedule] coverage, else off)",
    )
    group.add_argument(
        "--rpo",
        default=None,
        metavar="DURATION",
        help="RPO of --coverage, e.g. 26h (default: [schedule] rpo, else 26h)",
    )
    _add_connection(schedule)
    _add_discovery(schedule)
    _add_run_options(schedule)
    _add_logging(schedule)
    schedule.set_defaults(handler=_cmd_schedule)


def _settings(args: argparse.Namespace, base: dict[str, object] | None = None) -> RunSettings:
    from orchestrator.config.settings import load_config, resolve

    config = load_config(args.config)
    if base:  # settings a ledger recorded: below the config file and everything else
        config = _merge_recorded(base, config)
    return resolve(vars(args), os.environ, config, config_path=args.config)


def _merge_recorded(recorded: dict[str, object], config: dict[str, object]) -> dict[str, object]:
    from orchestrator.config.settings import OPTIONS

    merged: dict[str, dict[str, object]] = {}
    for opt in OPTIONS:
        if opt.config and recorded.get(opt.name) is not None and not opt.secret:
            section, key = opt.config.split(".")
            merged.setdefault(section, {})[key] = recorded[opt.name]
    for section, values in config.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values  # type: ignore[assignment]
    return dict(merged)


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import launch_job

    settings = _settings(args)
    if args.discover:
        from orchestrator.cli.nightly import launch_discovered_run

        return launch_discovered_run(args, settings)
    return launch_job(args, settings, manifest=Path(args.manifest))


def _cmd_discover(args: argparse.Namespace) -> int:
    from orchestrator.cli.nightly import launch_discover

    return launch_discover(args, _settings(args))


def _cmd_schedule(args: argparse.Namespace) -> int:
    from orchestrator.cli.nightly import launch_schedule

    return launch_schedule(args, _settings(args))


def _cmd_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import launch_job
    from orchestrator.errors import ConfigError
    from orchestrator.ledger.file import last_record

    ledger = Path(args.ledger)
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
    settings = _settings(args, recorded if isinstance(recorded, dict) else None)
    _refuse_other_service(ledger, recorded, settings.service)
    if started.get("source") == "discover":
        args.allow_empty = True  # a discovery that found nothing new is not a mistake
    digest = started.get("manifest_sha256")
    if not args.replan and isinstance(digest, str):
        args.expect_manifest_sha256 = digest
    return launch_job(args, settings, manifest=Path(str(manifest)))


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


def _cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import open_output, secrets_of
    from orchestrator.cli.logs import close_logging
    from orchestrator.cli.planning import launch_plan

    settings = _settings(args)
    open_output(args, secrets_of(settings, os.environ))
    try:
        return launch_plan(args, settings, manifest=Path(args.manifest), as_json=args.json)
    finally:
        close_logging()


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.errors import ConfigError
    from orchestrator.insight.ledgers import selected_records
    from orchestrator.insight.report import (
        build_report,
        check_include,
        render_csv,
        render_json,
        render_table,
        write_failed_manifest,
    )

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


def _cmd_track(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.cli.launch import open_output, secrets_of
    from orchestrator.cli.logs import close_logging
    from orchestrator.cli.tracking import launch_track
    from orchestrator.ledger.file import last_record

    # As `resume` does: the endpoint and region the run used, under the config and flags.
    ledger = Path(args.ledger)
    started = last_record(ledger, "run_started") if ledger.exists() else None
    recorded = (started or {}).get("settings")
    settings = _settings(args, recorded if isinstance(recorded, dict) else None)
    open_output(args, secrets_of(settings, os.environ))
    try:
        return launch_track(args, settings)
    finally:
        close_logging()


def _cmd_config(args: argparse.Namespace) -> int:
    import json

    from orchestrator.config.settings import explain, load_config

    config = load_config(args.config)
    rows = explain(vars(args), os.environ, config, config_path=args.config)
    if args.json:
        doc = {name: {"value": value, "source": source} for name, value, source in rows}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return ExitCode.OK
    width = max(len(name) for name, _, _ in rows)
    shown = max(len(str(value)) for _, value, _ in rows)
    lines = [f"{'setting':<{width}}  {'value':<{shown}}  source"]
    lines += [f"{name:<{width}}  {value!s:<{shown}}  {source}" for name, value, source in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return ExitCode.OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.cli.simulate import run_from_args

    return run_from_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_arguments(parser, args.command, unknown)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    return _guarded(handler, args)


def _unknown_arguments(
    parser: argparse.ArgumentParser, command: str | None, unknown: list[str]
) -> NoReturn:
    """Exit 2 with the command's own usage and, for a misspelt flag, the closest one."""
    import difflib

    chosen = parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            chosen = action.choices[command]
    flags = [f for a in chosen._actions for f in a.option_strings if f.startswith("--")]
    hint = ""
    for word in unknown:
        close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.75)
        if word.startswith("--") and close:
            hint = f"; did you mean {close[0]}?"
            break
    chosen.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _guarded(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command; our errors become one line and a documented code, never a traceback."""
    from orchestrator import errors

    known: tuple[tuple[type[BaseException], str, ExitCode], ...] = (
        (errors.ConfigError, "configuration: ", ExitCode.USAGE),
        (errors.ManifestError, "manifest: ", ExitCode.USAGE),
        (errors.LedgerError, "ledger: ", ExitCode.LEDGER),
        (errors.ScheduleError, "schedule: ", ExitCode.USAGE),
        (errors.AuthError, "", ExitCode.AUTH),
        (errors.ServiceUnreachableError, "service unreachable: ", ExitCode.GAVE_UP),
        (errors.TransportError, "service unreachable: ", ExitCode.GAVE_UP),
        (errors.TransientApiError, "the service kept failing: ", ExitCode.GAVE_UP),
        (errors.PermanentApiError, "the service refused: ", ExitCode.USAGE),
        (errors.OrchestratorError, "", ExitCode.INTERNAL),
    )
    try:
        return handler(args)
    except Exception as raised:
        exc = _ours_inside(raised, errors.OrchestratorError)
        for kind, prefix, code in known:
            if isinstance(exc, kind):
                return _fail(f"{prefix}{exc}", code)
        if getattr(args, "debug", False):
            raise
        return _fail(
            f"internal error ({type(exc).__name__}); re-run with --debug for details",
            ExitCode.INTERNAL,
        )
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)


def _ours_inside(exc: BaseException, ours: type[BaseException]) -> BaseException:
    """A task group wraps a worker's error in an ExceptionGroup (with the cancellations it
    caused): report the first of our own errors inside it as if it had been raised alone."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _ours_inside(inner, ours)
            if isinstance(found, ours):
                return found
    return exc


def _fail(message: str, code: ExitCode) -> int:
    from orchestrator.safe_text import for_terminal

    # Messages may quote the service or a file: no escape codes through, and one screenful.
    # Our own messages may span lines (the credential chain's list): those newlines stay.
    shown = "\n".join(for_terminal(line, 2000) for line in message[:2000].split("\n"))
    cut = "..." if len(message) > 2000 else ""
    print(f"csbs-orchestrator: error: {shown}{cut}", file=sys.stderr)
    return code
