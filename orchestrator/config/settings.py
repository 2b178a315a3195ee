"""Run settings, resolved once with the precedence flags > environment > config file > defaults.

Every tunable is declared once in :data:`OPTIONS`: its flag, type, default, environment
variable and place in the TOML config. The CLI builds its flags from that table
(:mod:`orchestrator.cli.options`, so ``--help`` shows each default) and :func:`resolve`
folds the four sources into one frozen :class:`RunSettings`. Nothing else reads the
environment or the config file.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config.keys import check_keys
from orchestrator.errors import ConfigError

__all__ = [
    "OPTIONS",
    "Option",
    "RunSettings",
    "explain",
    "known_config_keys",
    "load_config",
    "resolve",
]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _rate(text: str) -> float:
    """``auto`` (learn the rate, no ceiling) is 0; else a ceiling in requests per second."""
    if text.strip().lower() == "auto":
        return 0.0
    try:
        float(text)
    except ValueError:
        raise ValueError("must be a number of requests per second, or auto") from None
    return _non_negative_float(text)


def _percent(text: str) -> float:
    value = _finite_float(text)
    if not 0 < value <= 100:
        raise ValueError("must be a percentage in (0, 100]")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: where it may come from and how to parse it."""

    name: str  # attribute of RunSettings
    flag: str | None
    parse: Callable[[str], Any]
    default: Any
    help: str
    env: str | None = None
    config: str | None = None  # "section.key" in the TOML file
    secret: bool = False
    group: str = "run"  # which commands take the flag: "run" or "connection"


_CONN = "connection"


def _service(text: str) -> str:
    value = text.strip().lower()
    if value not in _SERVICES:
        raise ValueError(f"service must be one of {', '.join(_SERVICES)}")
    return value


#: The backup services spoken: CSBS v1 (orchestrator/client.py), CBR v3 (service/cbr.py).
_SERVICES = ("csbs", "cbr")

OPTIONS: tuple[Option, ...] = (
    Option(
        "service",
        "--service",
        _service,
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
        _bool,
        True,
        "do not verify TLS certificates, and allow http:// to a host that is not loopback "
        "for calls that carry no credential (config: verify_tls = false); logs a warning",
        config="connection.verify_tls",
        group=_CONN,
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
        _positive_float,
        60.0,
        "seconds for one HTTP request, connect to last byte",
        config="connection.timeout",
        group=_CONN,
    ),
    Option(
        "concurrency",
        "--concurrency",
        _positive_int,
        64,
        "requests in flight, in all",
        env="CSBS_CONCURRENCY",
        config="limits.concurrency",
    ),
    Option(
        "per_region",
        "--per-region",
        _positive_int,
        32,
        "requests in flight per destination region (the adaptive ceiling)",
        config="limits.per_region",
    ),
    Option(
        "per_region_floor",
        "--per-region-floor",
        _positive_int,
        2,
        "the adaptive per-region limit never drops below this (unless set, at most --per-region)",
        config="limits.per_region_floor",
    ),
    Option(
        "adaptive",
        "--adaptive",
        _bool,
        True,
        "adapt per-region concurrency to 503s and timeouts (true/false; 429s: --pace)",
        config="limits.adaptive",
    ),
    Option(
        "rate",
        "--rate",
        _rate,
        0.0,
        "ceiling in requests per second to the service, all regions; under it the pace "
        "the service allows is learned from its 429s (auto or 0 = no ceiling)",
        env="CSBS_RATE",
        config="limits.rate",
    ),
    Option(
        "pace",
        "--pace",
        _bool,
        True,
        "learn the rate the service allows from its 429s and send at it (true/false)",
        config="limits.pace",
    ),
    Option(
        "max_attempts",
        "--max-attempts",
        _positive_int,
        8,
        "attempts per pair on transient errors (503, 429, 5xx, timeouts)",
        config="retry.max_attempts",
    ),
    Option(
        "retry_time",
        "--retry-time",
        _non_negative_float,
        600.0,
        "seconds one pair may spend retrying before it gives up",
        config="retry.max_elapsed",
    ),
    Option(
        "unreachable_after",
        "--unreachable-after",
        _non_negative_float,
        60.0,
        "before any answer, stop when no request has connected for this long "
        "(0: retry as for any transient error)",
        config="retry.unreachable_after",
        group=_CONN,  # every command that talks to the service takes it
    ),
    Option(
        "reconcile_skew",
        "--reconcile-skew",
        _non_negative_float,
        300.0,
        "reconcile: a record created more than this many seconds before the pair's first "
        "attempt was there before it (already_replicated), not made by it (replicated)",
        config="retry.reconcile_skew",
    ),
    Option(
        "retry_base",
        None,
        _non_negative_float,
        0.5,
        "first backoff cap in seconds",
        config="retry.base_delay",
    ),
    Option(
        "retry_cap",
        None,
        _non_negative_float,
        30.0,
        "largest backoff in seconds",
        config="retry.max_delay",
    ),
    Option(
        "retry_budget",
        "--retry-budget",
        _percent,
        20.0,
        "retries allowed as a percentage of first attempts (the SRE retry budget)",
        config="retry.budget_percent",
    ),
    Option(
        "failure_min_results",
        "--failure-min-results",
        _positive_int,
        1000,
        "the failure threshold applies after this many final results",
        config="threshold.min_results",
    ),
    Option(
        "failure_percent",
        "--failure-percent",
        _percent,
        50.0,
        "stop sending when more than this percentage of final results failed permanently",
        config="threshold.max_failed_percent",
    ),
    Option(
        "max_duration",
        "--max-duration",
        _non_negative_float,
        0.0,
        "seconds after which no new pair starts; in-flight ones finish (0 = no limit)",
        config="run.max_duration",
    ),
    Option(
        "grace_period",
        "--grace-period",
        _non_negative_float,
        30.0,
        "seconds in-flight requests may take to finish after the first SIGINT/SIGTERM",
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


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The resolved settings of one invocation. Secrets never appear in :meth:`public`."""

    endpoint: str | None = None
    region: str | None = None
    project_id: str | None = None
    service: str = "csbs"
    iam_endpoint: str | None = None
    iam_user: str | None = None
    iam_domain: str | None = None
    iam_password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    request_timeout: float = 60.0
    concurrency: int = 64
    per_region: int = 32
    per_region_floor: int = 2
    adaptive: bool = True
    rate: float = 0.0
    pace: bool = True
    max_attempts: int = 8
    retry_time: float = 600.0
    unreachable_after: float = 60.0
    reconcile_skew: float = 300.0
    retry_base: float = 0.5
    retry_cap: float = 30.0
    retry_budget: float = 20.0
    failure_min_results: int = 1000
    failure_percent: float = 50.0
    max_duration: float = 0.0
    grace_period: float = 30.0
    metrics_file: str | None = None
    state_file: str | None = None
    error_codes: Mapping[str, str] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    """``[connection.endpoints]``: source region -> base URL (one endpoint per region)."""

    def public(self) -> dict[str, Any]:
        """Settings as recorded in the ledger's ``run_started`` line: secrets left out."""
        secret = {o.name for o in OPTIONS if o.secret}
        out = {o.name: getattr(self, o.name) for o in OPTIONS if o.name not in secret}
        out["error_codes"] = dict(self.error_codes)
        out["endpoints"] = dict(self.endpoints)
        return out


#: Keys of the config sections that other modules read (None: that module checks them).
_OTHER_SECTIONS: Mapping[str, frozenset[str] | None] = {
    "errors": frozenset({"codes"}),
    "discover": None,
    "simulator": None,
    "schedule": frozenset(
        {
            "cron",
            "timezone",
            "state_dir",
            "keep_ledgers",
            "missed_runs",
            "max_lateness",
            "coverage",  # schedule --coverage (cli/nightly.py)
            "rpo",
        }
    ),
}
#: Keys of OPTIONS' sections that are not options: [connection.endpoints] (one URL per region).
_TABLES: Mapping[str, frozenset[str]] = {"connection": frozenset({"endpoints"})}


def known_config_keys() -> dict[str, frozenset[str] | None]:
    """Every section of the config file and its keys: :data:`OPTIONS` and the others."""
    known: dict[str, set[str]] = {}
    for opt in OPTIONS:
        if opt.config:
            section, key = opt.config.split(".")
            known.setdefault(section, set()).add(key)
    for section, keys in _TABLES.items():
        known.setdefault(section, set()).update(keys)
    return {**{s: frozenset(k) for s, k in known.items()}, **_OTHER_SECTIONS}


def load_config(path: str | None) -> dict[str, Any]:
    """Read a TOML config file; errors name the file and what is wrong, an unknown section
    or key included (a typo would otherwise leave the default in force, unseen)."""
    if path is None:
        return {}
    try:
        with Path(path).open("rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): save the config file as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table: a file nested thousands
        # deep exhausts the stack. No real config nests more than a few levels.
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    check_keys(config, known_config_keys(), path)
    return config


_ENDPOINT_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")


def _endpoints(table: Any, config_path: str | None) -> dict[str, str]:
    """``[connection.endpoints]``: ``region = "https://host[:port]"`` per source region."""
    if table is None:
        return {}
    where = f"{config_path}: [connection.endpoints]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of region = URL")
    found: dict[str, str] = {}
    for region, url in table.items():
        if not _ENDPOINT_REGION.fullmatch(str(region)):
            raise ConfigError(f"{where}: {region!r} is not a region name (like cn-north-4)")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}: {region}: the endpoint must be an http(s):// URL")
        if "@" in url.split("//", 1)[1].split("/", 1)[0]:
            # Said without the URL: it holds a credential.
            raise ConfigError(f"{where}: {region}: credentials in the URL are not supported")
        found[str(region)] = url
    return found


def _from_config(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _parse(opt: Option, raw: Any, source: str) -> Any:
    if not isinstance(raw, str):
        raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return opt.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc} (got {'***' if opt.secret else repr(raw)})") from None


def _pick(
    opt: Option,
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    config_path: str | None,
) -> tuple[Any, str]:
    """One option's value and where it came from: flag, environment, file or default."""
    flag_value = flags.get(opt.name) if flags is not None else None
    if flag_value is not None:
        return flag_value, f"flag {opt.flag}"
    if opt.env and env.get(opt.env):
        return _parse(opt, env[opt.env], f"environment {opt.env}"), f"environment {opt.env}"
    if opt.config and (raw := _from_config(config, opt.config)) is not None:
        where = f"{config_path}: [{opt.config}]"
        return _parse(opt, raw, where), f"file {config_path} [{opt.config}]"
    return opt.default, "default"


def explain(
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    config_path: str | None = None,
) -> list[tuple[str, Any, str]]:
    """Every option's effective value and its source, as :func:`resolve` picks them (for
    ``config check``); secrets that are set show as ``***``."""
    settings = resolve(flags, env, config, config_path=config_path)
    rows = []
    for opt in OPTIONS:
        _, source = _pick(opt, flags, env, config, config_path)
        value = getattr(settings, opt.name)
        rows.append((opt.name, "***" if opt.secret and value else value, source))
    return rows


def resolve(
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    config_path: str | None = None,
) -> RunSettings:
    """Fold flags > environment > config file > defaults into one :class:`RunSettings`."""
    values: dict[str, Any] = {}
    defaulted: set[str] = set()
    for opt in OPTIONS:
        values[opt.name], source = _pick(opt, flags, env, config, config_path)
        if source == "default":
            defaulted.add(opt.name)
    codes = _from_config(config, "errors.codes") or {}
    if not isinstance(codes, Mapping):
        raise ConfigError(f"{config_path}: [errors.codes] must be a table of code = class")
    values["error_codes"] = {str(k): str(v) for k, v in codes.items()}
    values["endpoints"] = _endpoints(_from_config(config, "connection.endpoints"), config_path)
    floor, ceiling = values["per_region_floor"], values["per_region"]
    if floor > ceiling:
        if "per_region_floor" not in defaulted:
            raise ConfigError(
                f"--per-region-floor ({floor}) exceeds --per-region ({ceiling}): "
                "lower the floor or raise the ceiling"
            )
        # --per-region 1 alone means one at a time, not an error about a floor of 2 that
        # nobody asked for.
        values["per_region_floor"] = ceiling
    return RunSettings(**values)
