"""Every setting, declared once: its flag, parser, default, help, environment variable and
key in the TOML config (:data:`OPTIONS`), for every section of the file. The CLI builds its
flags from this table (:mod:`orchestrator.cli.options`), :mod:`orchestrator.config.settings`
resolves it (flag > environment > config file > default, in one place), and
:mod:`orchestrator.config.config_file` checks the file's keys against it.

This module holds the run's own settings (the rows of :class:`RunSettings`);
:mod:`orchestrator.config.section_options` the ``[schedule]``, ``[discover]`` and
``[simulator]`` rows.
"""

from __future__ import annotations

from orchestrator.config.option import Option
from orchestrator.config.parsers import (
    as_is,
    boolean,
    non_negative_float,
    non_negative_seconds,
    percent,
    positive_int,
    positive_seconds,
    rate,
    service,
)
from orchestrator.config.section_options import SECTION_OPTIONS

__all__ = ["OPTIONS", "RUN_OPTIONS", "section_keys"]


_CONN = "connection"

#: The scalar settings of :class:`~orchestrator.config.settings.RunSettings`, one row each.
RUN_OPTIONS: tuple[Option, ...] = (
    Option(
        "service",
        "--service",
        service,
        "csbs",
        "backup service: csbs (v1 checkpoint items) or cbr (v3 vault backups)",
        env="CSBS_SERVICE",
        config="connection.service",
        group=_CONN,
    ),
    Option(
        "endpoint",
        "--endpoint",
        str,
        None,
        "CSBS base URL for the source region, without a path "
        "(default: https://csbs.{region}.myhuaweicloud.com)",
        env="CSBS_ENDPOINT",
        config="connection.endpoint",
        group=_CONN,
    ),
    Option(
        "region",
        "--region",
        str,
        None,
        "source region, e.g. cn-north-1",
        env="HUAWEICLOUD_SDK_REGION",
        config="connection.region",
        group=_CONN,
    ),
    Option(
        "project_id",
        "--project-id",
        str,
        None,
        "source project id (rows may override it)",
        env="HUAWEICLOUD_SDK_PROJECT_ID",
        config="connection.project_id",
        group=_CONN,
    ),
    Option(
        "iam_endpoint",
        "--iam-endpoint",
        str,
        None,
        "IAM base URL for user/password tokens (default: https://iam.{region}.myhuaweicloud.com)",
        env="CSBS_IAM_ENDPOINT",
        config="auth.iam_endpoint",
        group=_CONN,
    ),
    Option(
        "iam_user",
        None,
        str,
        None,
        "IAM user name for token auth",
        env="CSBS_IAM_USER",
        config="auth.user",
        group=_CONN,
    ),
    Option(
        "iam_domain",
        None,
        str,
        None,
        "IAM domain (account) name for token auth",
        env="CSBS_IAM_DOMAIN",
        config="auth.domain",
        group=_CONN,
    ),
    Option(
        "iam_password",
        None,
        str,
        None,
        "IAM password for token auth",
        env="CSBS_IAM_PASSWORD",
        config="auth.password",
        secret=True,
        group=_CONN,
    ),
    Option(
        "verify_tls",
        "--insecure",
        boolean,
        True,
        "do not verify TLS certificates, and allow http:// to a host that is not loopback "
        "for calls that carry no credential (config: verify_tls = false); logs a warning",
        config="connection.verify_tls",
        group=_CONN,
        const=False,  # the flag takes no value: it turns verification off
    ),
    Option(
        "ca_file",
        "--ca-file",
        str,
        None,
        "PEM file of CA certificates to trust instead of the system store (a private CA)",
        env="CSBS_CA_FILE",
        config="connection.ca_file",
        group=_CONN,
    ),
    Option(
        "request_timeout",
        "--request-timeout",
        positive_seconds,
        60.0,
        "seconds (or 30m/6h) for one HTTP request, connect to last byte",
        config="connection.timeout",
        group=_CONN,
    ),
    Option(
        "concurrency",
        "--concurrency",
        positive_int,
        64,
        "requests in flight, in all",
        env="CSBS_CONCURRENCY",
        config="limits.concurrency",
    ),
    Option(
        "per_region",
        "--per-region",
        positive_int,
        32,
        "requests in flight per destination region (the adaptive ceiling)",
        config="limits.per_region",
    ),
    Option(
        "per_region_floor",
        "--per-region-floor",
        positive_int,
        2,
        "the adaptive per-region limit never drops below this (unless set, at most --per-region)",
        config="limits.per_region_floor",
    ),
    Option(
        "adaptive",
        "--adaptive",
        boolean,
        True,
        "adapt per-region concurrency to 503s and timeouts (true/false; 429s: --pace)",
        config="limits.adaptive",
    ),
    Option(
        "rate",
        "--rate",
        rate,
        0.0,
        "ceiling in requests per second to the service, all regions; under it the pace "
        "the service allows is learned from its 429s; auto or 0 = no ceiling (default: auto)",
        env="CSBS_RATE",
        config="limits.rate",
    ),
    Option(
        "pace",
        "--pace",
        boolean,
        True,
        "learn the rate the service allows from its 429s and send at it (true/false)",
        config="limits.pace",
    ),
    Option(
        "max_attempts",
        "--max-attempts",
        positive_int,
        8,
        "attempts per pair on transient errors (503, 429, 5xx, timeouts)",
        config="retry.max_attempts",
    ),
    Option(
        "retry_time",
        "--retry-time",
        non_negative_seconds,
        600.0,
        "seconds, or 30m/6h, one pair may spend retrying before it gives up",
        config="retry.max_elapsed",
    ),
    Option(
        "unreachable_after",
        "--unreachable-after",
        non_negative_seconds,
        60.0,
        "before any answer, stop when no request has connected for this long "
        "(seconds, or 30m/6h; 0: retry as for any transient error)",
        config="retry.unreachable_after",
        group=_CONN,  # every command that talks to the service takes it
    ),
    Option(
        "reconcile_skew",
        "--reconcile-skew",
        non_negative_seconds,
        300.0,
        "reconcile: a record created more than this many seconds (or 30m/6h) before the "
        "pair's first attempt was there before it (already_replicated), not made by it "
        "(replicated)",
        config="retry.reconcile_skew",
    ),
    Option(
        "retry_base",
        None,
        non_negative_float,
        0.5,
        "first backoff cap in seconds",
        config="retry.base_delay",
    ),
    Option(
        "retry_cap",
        None,
        non_negative_float,
        30.0,
        "largest backoff in seconds",
        config="retry.max_delay",
    ),
    Option(
        "retry_budget",
        "--retry-budget",
        percent,
        20.0,
        "retries allowed as a percentage of first attempts (the SRE retry budget)",
        config="retry.budget_percent",
    ),
    Option(
        "failure_min_results",
        "--failure-min-results",
        positive_int,
        1000,
        "the failure threshold applies after this many final results",
        config="threshold.min_results",
    ),
    Option(
        "failure_percent",
        "--failure-percent",
        percent,
        50.0,
        "stop sending when more than this percentage of final results failed permanently",
        config="threshold.max_failed_percent",
    ),
    Option(
        "max_duration",
        "--max-duration",
        non_negative_seconds,
        0.0,
        "seconds, or 30m/6h, after which no new pair starts; in-flight ones have "
        "--grace-period to finish (0 = no limit)",
        config="run.max_duration",
    ),
    Option(
        "grace_period",
        "--grace-period",
        non_negative_seconds,
        30.0,
        "seconds, or 30m/6h, in-flight requests may take to finish after the first "
        "SIGINT/SIGTERM or --max-duration",
        config="run.grace_period",
    ),
    Option(
        "metrics_file",
        "--metrics-file",
        str,
        None,
        "write Prometheus text metrics here at the end (node_exporter textfile collector)",
        config="run.metrics_file",
    ),
    Option(
        "state_file",
        "--state-file",
        str,
        None,
        "remember the learned per-region limits here for the next run",
        config="limits.state_file",
    ),
)

#: The two tables of the run's settings, read whole (checked in config/settings.py).
_RUN_TABLES: tuple[Option, ...] = (
    Option(
        "endpoints",
        None,
        as_is,
        None,
        "source region = base URL, one endpoint per region (docs/region-endpoints.md)",
        config="connection.endpoints",
        group=_CONN,
    ),
    Option(
        "error_codes",
        None,
        as_is,
        None,
        "error code = class: how an answer's error code is treated "
        "(docs/service-fidelity.md#errors)",
        config="errors.codes",
    ),
)

#: Every row: every key of every section of the config file, every flag built from a row.
OPTIONS: tuple[Option, ...] = (*RUN_OPTIONS, *_RUN_TABLES, *SECTION_OPTIONS)


def section_keys(section: str) -> frozenset[str]:
    """The keys of one section of the config file, as the table declares them."""
    return frozenset(
        opt.config.split(".", 1)[1]
        for opt in OPTIONS
        if opt.config and opt.config.split(".", 1)[0] == section
    )
