"""Settings, resolved once with the precedence flags > environment > config file > defaults.

Every tunable of every section is declared once in
:data:`~orchestrator.config.options.OPTIONS`: its flag, type, default, environment variable
and place in the TOML config. The CLI builds its flags from that table
(:mod:`orchestrator.cli.options`, so ``--help`` shows each default); :func:`pick` is the one
place the four sources are folded, for one row; :func:`resolve` folds the run's rows into one
frozen :class:`RunSettings` and :func:`resolve_record` the rows of ``[schedule]``,
``[discover]`` or ``[simulator]``. Nothing else reads the environment or the config file.

:class:`RunSettings` holds one record per section of the file, each row in the section its
config key names (``[retry] max_attempts`` is ``settings.retry.max_attempts``); a new run
setting is one row in the table and one field in its section's record (a test holds the two
together). The ledger keeps them flat, by row name (:meth:`RunSettings.public`).

The engine and the service project these settings into their own records with classmethods
on those records (``RetryPolicy.from_settings``, ``PoolSettings.from_settings``,
``DiscoverConfig.from_settings``, ``ClientSettings.from_settings``): config
sits below them and imports none of their types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.config.option import Option
from orchestrator.config.options import OPTIONS, RUN_OPTIONS
from orchestrator.errors import ConfigError

__all__ = [
    "AuthSection",
    "ConnectionSection",
    "ErrorsSection",
    "LimitsSection",
    "RetrySection",
    "RunSection",
    "RunSettings",
    "ThresholdSection",
    "explain",
    "pick",
    "resolve",
    "resolve_record",
]


@dataclass(frozen=True, slots=True)
class ConnectionSection:
    """``[connection]``: which service, where it answers and how to reach it."""

    service: str = "csbs"
    endpoint: str | None = None
    region: str | None = None
    project_id: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    request_timeout: float = 60.0
    endpoints: Mapping[str, str] = field(default_factory=dict)
    """``[connection.endpoints]``: source region -> base URL (one endpoint per region)."""


@dataclass(frozen=True, slots=True)
class AuthSection:
    """``[auth]``: an IAM user for token auth (the credential chain's second link)."""

    iam_endpoint: str | None = None
    iam_user: str | None = None
    iam_domain: str | None = None
    iam_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """``[limits]``: how much is in flight, and how fast it is sent."""

    concurrency: int = 64
    per_region: int = 32
    per_region_floor: int = 2
    adaptive: bool = True
    rate: float = 0.0
    pace: bool = True
    state_file: str | None = None


@dataclass(frozen=True, slots=True)
class RetrySection:
    """``[retry]``: how long and how often one pair is tried again."""

    max_attempts: int = 8
    retry_time: float = 600.0
    unreachable_after: float = 60.0
    reconcile_skew: float = 300.0
    retry_base: float = 0.5
    retry_cap: float = 30.0
    retry_budget: float = 20.0

    @property
    def unreachable_s(self) -> float | None:
        """How long a service never reached is tried: ``unreachable_after``, at most the
        retry time (a pair gives up then anyway); None when it is 0 (off)."""
        if self.unreachable_after > 0:
            return min(self.unreachable_after, self.retry_time)
        return None


@dataclass(frozen=True, slots=True)
class ThresholdSection:
    """``[threshold]``: when too many permanent failures stop the run."""

    failure_min_results: int = 1000
    failure_percent: float = 50.0


@dataclass(frozen=True, slots=True)
class RunSection:
    """``[run]``: the run's time limits and its metrics file."""

    max_duration: float = 0.0
    grace_period: float = 30.0
    metrics_file: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorsSection:
    """``[errors]``: how an answer's error code is treated."""

    error_codes: Mapping[str, str] = field(default_factory=dict)


#: Each run setting's section of the config file, as its row says: the row
#: ``limits.concurrency`` is ``settings.limits.concurrency``.
_SECTION_OF: dict[str, str] = {
    o.name: o.config.split(".", 1)[0] for o in OPTIONS if o.record == "run" and o.config
}


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The resolved settings of one invocation, one record per section of the config file
    (``settings.retry.max_attempts`` is ``[retry] max_attempts``). Secrets never appear in
    :meth:`public`."""

    connection: ConnectionSection = field(default_factory=ConnectionSection)
    auth: AuthSection = field(default_factory=AuthSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    retry: RetrySection = field(default_factory=RetrySection)
    threshold: ThresholdSection = field(default_factory=ThresholdSection)
    run: RunSection = field(default_factory=RunSection)
    errors: ErrorsSection = field(default_factory=ErrorsSection)

    @classmethod
    def of(cls, **values: Any) -> RunSettings:
        """The defaults with some settings given by their rows' names (``concurrency=8``):
        how :func:`resolve` builds the record from the table."""
        return cls().with_values(**values)

    def with_values(self, **values: Any) -> RunSettings:
        """These settings with some changed, by their rows' names, each in the section its
        row names (``metrics_file=`` is ``run.metrics_file``). An unknown name is a
        ``TypeError``."""
        grouped: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in _SECTION_OF:
                raise TypeError(f"RunSettings has no setting {name!r}")
            grouped.setdefault(_SECTION_OF[name], {})[name] = value
        return replace(self, **{s: replace(getattr(self, s), **v) for s, v in grouped.items()})

    def value(self, name: str) -> Any:
        """One setting by its row's name (``config explain``, the ledger's record)."""
        return getattr(getattr(self, _SECTION_OF[name]), name)

    def public(self) -> dict[str, Any]:
        """Settings as recorded in the ledger's ``run_started`` line: secrets left out."""
        out = {o.name: self.value(o.name) for o in RUN_OPTIONS if not o.secret}
        out["error_codes"] = dict(self.errors.error_codes)
        out["endpoints"] = dict(self.connection.endpoints)
        return out


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
    if opt.file_value_as_is:
        return raw
    if not isinstance(raw, str):
        raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return opt.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc} (got {'***' if opt.secret else repr(raw)})") from None


def pick(
    opt: Option,
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    config_path: str | None,
) -> tuple[Any, str]:
    """One option's value and where it came from: flag, environment, file or default (the
    precedence, for every row of every section)."""
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
    """Every option's effective value and its source, as :func:`resolve` and
    :func:`resolve_record` pick them (for ``config check``), the run's settings first, then
    ``[schedule]``, ``[discover]`` and ``[simulator]``; secrets that are set show as ``***``."""
    settings = resolve(flags, env, config, config_path=config_path)
    rows = []
    for opt in RUN_OPTIONS:
        _, source = pick(opt, flags, env, config, config_path)
        value = settings.value(opt.name)
        rows.append((opt.name, "***" if opt.secret and value else value, source))
    for record in ("schedule", "discover", "simulator"):
        resolved = resolve_record(record, flags, env, config, config_path=config_path)
        for opt in (o for o in OPTIONS if o.record == record and o.config):
            value, source = resolved[opt.name]  # a flag alone (--once, --to) is no setting
            rows.append((opt.name, "***" if opt.secret and value else value, source))
    return rows


def resolve_record(
    record: str,
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    config_path: str | None = None,
) -> dict[str, tuple[Any, str]]:
    """The rows of one record (``schedule``, ``discover``, ``simulator``): each value and
    where it came from. ``[discover]`` and ``[simulator]`` values of the file come as they
    are, for the module that reads them to check."""
    return {
        opt.name: pick(opt, flags, env, config, config_path)
        for opt in OPTIONS
        if opt.record == record
    }


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
    for opt in RUN_OPTIONS:
        values[opt.name], source = pick(opt, flags, env, config, config_path)
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
    return RunSettings.of(**values)
