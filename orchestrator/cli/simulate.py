"""The ``simulate`` subcommand's flags and its blocking entry point.

Kept import-light (no aiohttp) because the CLI builds every subparser on each start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import FaultConfig, SimulatorConfig

__all__ = ["add_arguments", "config_from_args", "run_from_args"]

_CONFIG = SimulatorConfig()
_FAULTS = FaultConfig()

# (flag, knob, type, help); every default comes from the config records themselves.
_KNOBS: tuple[tuple[str, str, type, str], ...] = (
    ("--seed", "seed", int, "seed of the estate and of every random draw"),
    ("--items", "items", int, "checkpoint items generated at start"),
    ("--projects-per-region", "projects_per_region", int, "source projects per region"),
    ("--age-days", "age_days", int, "0, or daily backups per server over this many past days"),
    ("--ak", "ak", str, "the access key accepted for SDK-HMAC-SHA256 signatures"),
    ("--sk", "sk", str, "the secret key of --ak"),
    ("--user", "user", str, "IAM user name accepted by POST /v3/auth/tokens"),
    ("--password", "password", str, "that user's password"),
    ("--domain", "domain", str, "that user's domain (account) name"),
    ("--token-ttl", "token_ttl_s", float, "token lifetime in simulated seconds"),
    ("--temp-key-ttl", "temp_key_ttl_s", float, "metadata temporary key lifetime, sim. s"),
    ("--copy-wait", "copy_wait_s", float, "simulated seconds a replication is waiting_replicate"),
    ("--copy-duration", "copy_duration_s", float, "simulated seconds it is replicating"),
    ("--time-scale", "time_scale", float, "simulated seconds per real second"),
    ("--duplicate-code", "duplicate_code", str, "error code for an already replicated backup"),
    ("--duplicate-status", "duplicate_status", int, "HTTP status for it"),
    ("--duplicate-msg", "duplicate_msg", str, "error message for it"),
    ("--latency", "latency_s", float, "fixed response latency in seconds"),
    ("--latency-jitter", "latency_jitter_s", float, "extra uniform random latency, seconds"),
    ("--p503", "p503", float, "share of requests answered 503"),
    ("--p500", "p500", float, "share of requests answered 500"),
    ("--p-malformed", "p_malformed", float, "share answered with a broken (HTML/truncated) body"),
    ("--p-drop", "p_drop", float, "share whose connection is cut before anything is applied"),
    ("--p-apply-drop", "p_apply_drop", float, "share applied, then the connection is cut"),
    ("--throttle-rate", "throttle_rate", float, "requests/s per project before 429; 0 = off"),
    ("--throttle-burst", "throttle_burst", int, "token bucket size; 0 = ceil(rate)"),
    ("--max-in-flight", "max_in_flight", int, "replications in progress before 503; 0 = off"),
    ("--copy-fail-rate", "copy_fail_rate", float, "share of replications that end in fail"),
    ("--copy-skip-rate", "copy_skip_rate", float, "share of replications that end in skip"),
)


def _default(knob: str) -> Any:
    if hasattr(_FAULTS, knob):
        return getattr(_FAULTS, knob)
    return getattr(_CONFIG, knob)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to ``parser`` (the ``simulate`` subcommand)."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--regions",
        default=",".join(_CONFIG.regions),
        help="comma-separated source regions (default: %(default)s)",
    )
    parser.add_argument(
        "--auth",
        choices=("any", "token", "aksk", "none"),
        default=_CONFIG.auth,
        help="accepted authentication (default: %(default)s)",
    )
    parser.add_argument(
        "--faults-on",
        choices=("replicate", "all"),
        default=_FAULTS.faults_on,
        help="where latency, throttling and faults apply (default: %(default)s)",
    )
    parser.add_argument(
        "--capacity-scope",
        choices=("region", "global"),
        default=_FAULTS.capacity_scope,
        help="count --max-in-flight per destination region or in total (default: %(default)s)",
    )
    parser.add_argument(
        "--write-manifest",
        metavar="FILE",
        default=None,
        help="write a CSV manifest of this estate's available items and exit (default: serve)",
    )
    parser.add_argument(
        "--manifest-rows",
        type=int,
        default=None,
        help="at most this many rows for --write-manifest (default: all)",
    )
    parser.add_argument(
        "--manifest-destinations",
        type=int,
        default=1,
        help="destination regions per item for --write-manifest (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest-service",
        choices=("csbs", "cbr"),
        default="csbs",
        help="--write-manifest for CSBS (checkpoint items) or CBR (backups and destination "
        "vaults) (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=None,
        help="send Retry-After (seconds) with 429 and 503 (default: none)",
    )
    for flag, knob, kind, text in _KNOBS:
        secret = knob in ("sk", "password")
        shown = "a built-in test value" if secret else "%(default)s"
        parser.add_argument(
            flag,
            dest=f"sim_{knob}",
            metavar=flag.removeprefix("--").replace("-", "_").upper(),
            type=kind,
            default=_default(knob),
            help=f"{text} (default: {shown})",
        )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    knobs: dict[str, Any] = {knob: getattr(args, f"sim_{knob}") for _, knob, _, _ in _KNOBS}
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    return SimulatorConfig.from_knobs(
        **knobs,
        regions=regions,
        auth=args.auth,
        faults_on=args.faults_on,
        capacity_scope=args.capacity_scope,
        retry_after_s=args.retry_after,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the first stdout line is the JSON start-up document."""
    # Imported here so that building the CLI parser loads neither asyncio nor aiohttp.
    import asyncio  # noqa: PLC0415 - lazy on purpose

    from orchestrator.simulator.server import serve  # noqa: PLC0415 - lazy on purpose

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"csbs-orchestrator simulate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.write_manifest:
        return _write_manifest(args, config)
    try:
        asyncio.run(serve(config, host=args.host, port=args.port, out=sys.stdout))
    except OSError as exc:  # the port is taken or the address is not ours
        print(f"csbs-orchestrator simulate: cannot listen: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK


def _write_manifest(args: argparse.Namespace, config: SimulatorConfig) -> int:
    from orchestrator.simulator import ManualClock  # noqa: PLC0415 - lazy on purpose
    from orchestrator.simulator.sample import write_estate_manifest  # noqa: PLC0415
    from orchestrator.simulator.state import Estate  # noqa: PLC0415

    estate = Estate(config, ManualClock())
    try:
        count = write_estate_manifest(
            estate,
            args.write_manifest,
            limit=args.manifest_rows,
            destinations=args.manifest_destinations,
            service=args.manifest_service,
        )
    except OSError as exc:
        print(f"csbs-orchestrator simulate: {args.write_manifest}: {exc.strerror}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"wrote {count} rows to {args.write_manifest}", file=sys.stderr)
    return ExitCode.OK
