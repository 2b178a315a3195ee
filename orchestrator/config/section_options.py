"""The rows of the settings table for ``[schedule]``, ``[discover]`` and ``[simulator]``
(the run's own rows are in :mod:`orchestrator.config.options`, which joins both).

``[schedule]`` resolves here, like the run's settings. ``[discover]`` and ``[simulator]``
hold tables, lists and knobs whose meaning their own modules know
(:mod:`orchestrator.discovery.rules`, :mod:`orchestrator.simulator.config`, which imports
nothing of the client side): the table declares their keys and flags, and hands the file's
values over as they are, for those modules to check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.config.option import Option
from orchestrator.config.parsers import (
    as_is,
    boolean,
    finite_float,
    positive_int,
    whole_number,
)

__all__ = ["DISCOVER_OPTIONS", "SCHEDULE_OPTIONS", "SECTION_OPTIONS", "SIMULATOR_OPTIONS"]


def _schedule(
    name: str,
    flag: str,
    key: str | None,
    text: str,
    *,
    parse: Callable[[str], Any] = str,
    default: Any = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    const: Any = None,
) -> Option:
    return Option(
        name,
        flag,
        parse,
        default,
        text,
        config=f"schedule.{key}" if key else None,
        group="schedule",
        record="schedule",
        metavar=metavar,
        choices=choices,
        const=const,
    )


SCHEDULE_OPTIONS: tuple[Option, ...] = (
    _schedule(
        "cron",
        "--cron",
        "cron",
        "five-field cron expression or @daily (default: [schedule] cron of --config)",
    ),
    _schedule(
        "tz",
        "--tz",
        "timezone",
        "IANA time zone of --cron, e.g. Europe/Berlin (default: [schedule] timezone)",
    ),
    _schedule(
        "state_dir",
        "--state-dir",
        "state_dir",
        "lock, schedule state and the dated ledgers (default: [schedule] state_dir)",
    ),
    _schedule(
        "keep",
        "--keep",
        "keep_ledgers",
        "dated ledgers to keep (default: 14)",
        parse=positive_int,
        default=14,
    ),
    _schedule(
        "missed_runs",
        "--missed-runs",
        "missed_runs",
        "after downtime: one catch-up run, or wait for the next time (default: run_once)",
        default="run_once",
        choices=("run_once", "skip"),
    ),
    _schedule(
        "max_lateness",
        "--max-lateness",
        "max_lateness",
        "run_once does not catch up a firing older than this (default: 43200)",
        parse=finite_float,
        default=12 * 3600.0,
        metavar="SECONDS",
    ),
    _schedule(
        "once",
        "--once",
        None,  # a command-line choice: a config file that always fired once would not schedule
        "fire now, once, then exit (default: keep running)",
        parse=boolean,
        default=False,
        const=True,
    ),
    _schedule(
        "coverage",
        "--coverage",
        "coverage",
        "end each firing with `coverage`: its table, and its gauges in --metrics-file "
        "(default: [schedule] coverage, else off)",
        parse=boolean,
        default=False,
        const=True,
    ),
    _schedule(
        "rpo",
        "--rpo",
        "rpo",
        "RPO of --coverage, e.g. 26h (default: [schedule] rpo, else 26h)",
        default="26h",  # read as a duration only when coverage is on
        metavar="DURATION",
    ),
)


def _discover(
    name: str,
    flag: str | None,
    key: str | None,
    text: str,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    append: bool = False,
) -> Option:
    return Option(
        name,
        flag,
        parse or (str if flag else as_is),
        None,  # None: discovery's own default (orchestrator/discovery/rules.py)
        text,
        config=f"discover.{key}" if key else None,
        group="discover",
        record="discover",
        metavar=metavar,
        choices=choices,
        append=append,
    )


DISCOVER_OPTIONS: tuple[Option, ...] = (
    _discover(
        "filter_status",
        "--status",
        "status",
        "list items of this status; 'any' for all (default: available)",
        metavar="STATUS",
    ),
    _discover(
        "filter_resource_type",
        "--resource-type",
        "resource_type",
        "only this resource type, e.g. OS::Nova::Server (default: any)",
        metavar="TYPE",
    ),
    _discover(
        "filter_name",
        "--name",
        "name",
        "only items whose name contains this (the service's fuzzy match; default: any)",
        metavar="TEXT",
    ),
    _discover(
        "filter_policy_id",
        "--policy-id",
        "policy_id",
        "only this backup policy (default: any)",
        metavar="ID",
    ),
    _discover(
        "filter_since",
        "--since",
        "created_since",
        "only items created since an ISO time (UTC if no zone) or an age: 36h, 7d (default: any)",
        metavar="WHEN",
    ),
    _discover(
        "to",
        "--to",
        None,
        "send every listed item there too (repeatable; adds to [[discover.rules]]; default: none)",
        metavar="REGION=PROJECT_ID",
        append=True,
    ),
    _discover(
        "page_size",
        "--page-size",
        "page_size",
        "items per listing page (default: 1000)",
        parse=positive_int,
    ),
    _discover(
        "select",
        "--select",
        "select",
        "all: every available backup lacking a copy; newest: per resource and region only "
        "the newest, when the region holds nothing as new, largest lag first "
        "(default: [discover] select, else all)",
        choices=("all", "newest"),
    ),
    _discover(
        "include_replicas",
        None,
        "include_replicas",
        "also list backups that are themselves replicas (default: false)",
    ),
    _discover(
        "sources",
        None,
        "sources",
        "[[discover.sources]]: project_id and region of each estate to list "
        "(default: --project-id and --region)",
    ),
    _discover(
        "rules",
        None,
        "rules",
        "[[discover.rules]]: match conditions and the destinations (to) of what matches",
    ),
    _discover(
        "cbr",
        None,
        "cbr",
        "[discover.cbr] destination_vaults: region = vault id, for --service cbr",
    ),
)


def _sim(
    knob: str,
    text: str,
    *,
    flag: str | None = None,
    parse: Callable[[str], Any] = as_is,
    group: str = "simulator",
    metavar: str | None = None,
    secret: bool = False,
) -> Option:
    return Option(
        f"sim_{knob}",
        flag,
        parse,
        None,  # None: the simulator's own default (orchestrator/simulator/config.py)
        text,
        config=f"simulator.{knob}",
        secret=secret,
        group=group,
        record="simulator",
        metavar=metavar,
    )


#: Every knob of the embedded simulator (``--simulate``); a test holds this list to the
#: simulator's own records.
SIMULATOR_OPTIONS: tuple[Option, ...] = (
    _sim(
        "seed", "seed of the simulated estate (default: 1)", flag="--sim-seed", parse=whole_number
    ),
    _sim(
        "age_days",
        "with --simulate: an estate of daily backups over this many past days (default: "
        "[simulator] age_days)",
        flag="--sim-age-days",
        parse=whole_number,
        group="coverage",
        metavar="DAYS",
    ),
    _sim("items", "checkpoint items generated at start"),
    _sim("regions", "source regions of the estate"),
    _sim("projects_per_region", "source projects per region"),
    _sim("capabilities", "source region = the destination regions it may replicate to"),
    _sim("ak", "the access key accepted for SDK-HMAC-SHA256 signatures"),
    _sim("sk", "the secret key of ak", secret=True),
    _sim("user", "IAM user name accepted by POST /v3/auth/tokens"),
    _sim("password", "that user's password", secret=True),
    _sim("domain", "that user's domain (account) name"),
    _sim("auth", "accepted authentication: any, token, aksk or none"),
    _sim("token_ttl_s", "token lifetime in simulated seconds"),
    _sim("temp_key_ttl_s", "metadata temporary key lifetime, simulated seconds"),
    _sim("metadata_tokens", "metadata session tokens: optional, required or off"),
    _sim("max_clock_skew_s", "AK/SK: the largest X-Sdk-Date skew accepted, seconds"),
    _sim("lockout_failures", "failed IAM logins before the user is locked out"),
    _sim("lockout_s", "how long a lockout lasts, simulated seconds"),
    _sim("copy_wait_s", "simulated seconds a replication is waiting_replicate"),
    _sim("copy_duration_s", "simulated seconds it is replicating"),
    _sim("time_scale", "simulated seconds per real second"),
    _sim("duplicate_code", "error code for an already replicated backup"),
    _sim("duplicate_status", "HTTP status for it"),
    _sim("duplicate_msg", "error message for it"),
    _sim("records_endpoint", "serve GET /v1/{project_id}/replication_records (true/false)"),
    _sim("faults_on", "where latency, throttling and faults apply: replicate or all"),
    _sim("latency_s", "fixed response latency in seconds"),
    _sim("latency_jitter_s", "extra uniform random latency, seconds"),
    _sim("p503", "share of requests answered 503"),
    _sim("p500", "share of requests answered 500"),
    _sim("p_malformed", "share answered with a broken (HTML/truncated) body"),
    _sim("p_drop", "share whose connection is cut before anything is applied"),
    _sim("p_apply_drop", "share applied, then the connection is cut"),
    _sim("throttle_rate", "requests/s per project before 429; 0 = off"),
    _sim("throttle_burst", "token bucket size; 0 = ceil(rate)"),
    _sim("retry_after_s", "send Retry-After (seconds) with 429 and 503"),
    _sim("max_in_flight", "replications in progress before 503; 0 = off"),
    _sim("capacity_scope", "count max_in_flight per destination region or in total"),
    _sim("copy_fail_rate", "share of replications that end in fail"),
    _sim("copy_skip_rate", "share of replications that end in skip"),
    _sim("replica_share", "share of backups the CBR face shows as replicas (image_type)"),
)

SECTION_OPTIONS: tuple[Option, ...] = (*SCHEDULE_OPTIONS, *DISCOVER_OPTIONS, *SIMULATOR_OPTIONS)
