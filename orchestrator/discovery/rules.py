"""The ``[discover]`` configuration: sources, destination rules, server-side filters."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from orchestrator.config.keys import did_you_mean
from orchestrator.config.options import section_keys
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.item import resource_name_of, resource_type_of, text_of
from orchestrator.errors import ConfigError

__all__ = [
    "SELECT_MODES",
    "Destination",
    "DiscoverConfig",
    "Filters",
    "Rule",
    "Source",
    "parse_since",
]

_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+")
_PROJECT = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The time format of the API's start_time/end_time (UTC, no zone suffix).
_API_TIME: Final = "%Y-%m-%dT%H:%M:%S.%f"

_RULE_MATCH_KEYS: Final = frozenset(
    {"source_region", "source_project_id", "name", "resource_name", "resource_type"}
)
_RULE_KEYS: Final = _RULE_MATCH_KEYS | {"to"}
#: The keys of ``[discover]``, as the settings table declares them (with their flags).
_DISCOVER_KEYS: Final = section_keys("discover")
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
#: ``select``: every available backup lacking a copy, or only each resource's newest.
SELECT_MODES: Final = ("all", "newest")


@dataclass(frozen=True, slots=True)
class Source:
    """A project in a region whose backups are listed."""

    project_id: str
    region: str

    def __str__(self) -> str:
        return f"{self.region}/{self.project_id}"


@dataclass(frozen=True, slots=True)
class Destination:
    region: str
    project_id: str
    vault_id: str | None = None  # CBR: the vault of ``region`` that receives the copy


@dataclass(frozen=True, slots=True)
class Rule:
    """Items that match every given condition go to every destination in ``to``.

    ``name`` and ``resource_name`` are shell-style patterns (``prod-*``, case-sensitive);
    the other conditions compare exactly. A condition left out matches anything.
    """

    to: tuple[Destination, ...]
    source_region: str | None = None
    source_project_id: str | None = None
    name: str | None = None
    resource_name: str | None = None
    resource_type: str | None = None

    def matches(self, source: Source, item: Mapping[str, Any]) -> bool:
        if self.source_region is not None and source.region != self.source_region:
            return False
        if self.source_project_id is not None and source.project_id != self.source_project_id:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(text_of(item.get("name")), self.name):
            return False
        if self.resource_name is not None and not fnmatch.fnmatchcase(
            resource_name_of(item), self.resource_name
        ):
            return False
        return self.resource_type is None or resource_type_of(item) == self.resource_type


@dataclass(frozen=True, slots=True)
class Filters:
    """Server-side filters of the listing (query parameters of ``GET /checkpoint_items``).

    ``status`` None lists every status (non-available items are then skipped here).
    """

    status: str | None = "available"
    resource_type: str | None = None
    name: str | None = None
    policy_id: str | None = None
    created_since: datetime | None = None

    def query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in ("status", "resource_type", "name", "policy_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.created_since is not None:
            out["start_time"] = self.created_since.astimezone(UTC).strftime(_API_TIME)
        return out


@dataclass(frozen=True, slots=True)
class DiscoverConfig:
    """Everything one discovery needs: where to look, what to ask, where things go."""

    sources: tuple[Source, ...]
    rules: tuple[Rule, ...]
    filters: Filters = field(default_factory=Filters)
    page_size: int = 1000
    include_replicas: bool = False
    service: str = "csbs"
    #: CBR: destination region -> vault id, for rule destinations that name no vault.
    vaults: Mapping[str, str] = field(default_factory=dict)
    select: str = "all"

    @classmethod
    def from_settings(
        cls,
        settings: RunSettings,
        config: Mapping[str, Any],
        *,
        now: datetime | None = None,
        path: str | None = None,
    ) -> DiscoverConfig:
        """``[discover]`` of the (already read) config file for the run's settings: their
        service, and their project and region as the source when the file names none."""
        default = None
        if settings.connection.project_id and settings.connection.region:
            default = Source(settings.connection.project_id.lower(), settings.connection.region)
        return cls.from_config(
            config, default_source=default, now=now, path=path, service=settings.connection.service
        )

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        default_source: Source | None = None,
        now: datetime | None = None,
        path: str | None = None,
        service: str = "csbs",
    ) -> DiscoverConfig:
        """Read the ``[discover]`` table of a config file (see configs/example.toml).

        ``default_source`` (the connection's project and region) is listed when the config
        names no ``[[discover.sources]]``. Unknown keys are refused: a misspelt condition
        would otherwise widen a rule to every item.
        """
        where = f"{path}: [discover]" if path else "[discover]"
        section = config.get("discover", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where} must be a table")
        _refuse_unknown(section, _DISCOVER_KEYS, where)
        sources = tuple(
            _source(entry, f"{where} sources[{i}]")
            for i, entry in enumerate(_table_list(section.get("sources", []), where, "sources"))
        )
        if not sources and default_source is not None:
            sources = (default_source,)
        rules = tuple(
            _rule(entry, f"{where} rules[{i}]", cbr=service == "cbr")
            for i, entry in enumerate(_table_list(section.get("rules", []), where, "rules"))
        )
        vaults = _cbr_vaults(section.get("cbr"), f"{where}.cbr", cbr=service == "cbr")
        since = section.get("created_since")
        try:
            created_since = None if since is None else parse_since(str(since), now=now)
        except ConfigError as exc:
            raise ConfigError(f"{where} {exc}") from None
        status = _optional_str(section, "status", where, default="available")
        filters = Filters(
            status=None if status == "any" else status,
            resource_type=_optional_str(section, "resource_type", where),
            name=_optional_str(section, "name", where),
            policy_id=_optional_str(section, "policy_id", where),
            created_since=created_since,
        )
        page_size = section.get("page_size", 1000)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ConfigError(f"{where} page_size: a whole number >= 1, got {page_size!r}")
        include = section.get("include_replicas", False)
        if not isinstance(include, bool):
            raise ConfigError(f"{where} include_replicas: true or false, got {include!r}")
        select = section.get("select", "all")
        if select not in SELECT_MODES:
            raise ConfigError(f"{where} select: one of {', '.join(SELECT_MODES)}, got {select!r}")
        return cls(sources, rules, filters, page_size, include, service, vaults, select)

    def with_overrides(
        self,
        *,
        filters: Mapping[str, str | None],
        to: Sequence[str] = (),
        now: datetime | None = None,
        select: str | None = None,
    ) -> DiscoverConfig:
        """Command-line filters on top (``status="any"`` lists every status, as in the
        config); ``to`` adds a catch-all rule per ``REGION=PROJECT_ID``; ``select`` replaces
        the config's."""
        if select is not None and select not in SELECT_MODES:
            raise ConfigError(f"--select {select!r}: one of {', '.join(SELECT_MODES)}")
        changes: dict[str, Any] = {}
        for key, value in filters.items():
            if value is None:
                continue
            if key == "created_since":
                changes[key] = parse_since(value, now=now)
            elif key == "status" and value == "any":
                changes[key] = None
            else:
                changes[key] = value
        rules = self.rules + tuple(_catch_all(text) for text in to)
        return replace(
            self,
            filters=replace(self.filters, **changes),
            rules=rules,
            select=select or self.select,
        )

    def check(self) -> None:
        """Refuse a configuration that cannot discover anything."""
        if not self.sources:
            raise ConfigError(
                "discover: no source to list: add [[discover.sources]] (project_id, region) "
                "to the config, or set --project-id and --region"
            )
        if not self.rules:
            raise ConfigError(
                "discover: no destination rules: add [[discover.rules]] to the config, "
                "or pass --to REGION=PROJECT_ID"
            )
        if self.service == "cbr":
            for rule in self.rules:
                for dest in rule.to:
                    if dest.vault_id is None and dest.region not in self.vaults:
                        raise ConfigError(
                            f"discover --service cbr: no destination vault for {dest.region}: "
                            f'set [discover.cbr] destination_vaults = {{ "{dest.region}" = '
                            '"<vault id>" } or vault_id in the rule\'s destination'
                        )


def _refuse_unknown(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    # Worded as the other sections' (config/keys.py): the first unknown key, the close one.
    unknown = sorted(set(table) - known)
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{where}: unknown key {key!r}{did_you_mean(key, known)} "
            f"(valid keys: {', '.join(sorted(known))})"
        )


def _table_list(value: object, where: str, name: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{where} {name}: an array of tables ([[discover.{name}]])")
    return value


def _optional_str(
    table: Mapping[str, Any], key: str, where: str, *, default: str | None = None
) -> str | None:
    value = table.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key}: a non-empty string, got {value!r}")
    return value


def _region(value: object, where: str) -> str:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ConfigError(f"{where}: a region name like cn-north-1, got {value!r}")
    return value


def _project(value: object, where: str) -> str:
    if not isinstance(value, str) or not _PROJECT.fullmatch(value):
        raise ConfigError(f"{where}: a project id (32 hex digits, or a UUID), got {value!r}")
    return value.lower()


def _source(entry: Mapping[str, Any], where: str) -> Source:
    _refuse_unknown(entry, frozenset({"project_id", "region"}), where)
    return Source(
        _project(entry.get("project_id"), f"{where} project_id"),
        _region(entry.get("region"), f"{where} region"),
    )


def _vault(value: object, where: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ConfigError(f"{where}: a vault id (a UUID, 8-4-4-4-12 hex digits), got {value!r}")
    return value.lower()


def _cbr_vaults(section: object, where: str, *, cbr: bool) -> dict[str, str]:
    """``[discover.cbr] destination_vaults``: region -> vault id (CBR runs only)."""
    if section is None:
        return {}
    if not cbr:
        raise ConfigError(f"{where}: CBR settings given, but the service is csbs (--service cbr)")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a table")
    _refuse_unknown(section, frozenset({"destination_vaults"}), where)
    vaults = section.get("destination_vaults", {})
    if not isinstance(vaults, Mapping):
        raise ConfigError(f'{where} destination_vaults: a table {{ "region" = "vault id" }}')
    return {
        _region(region, f"{where} destination_vaults"): _vault(
            vault, f"{where} destination_vaults.{region}"
        )
        for region, vault in vaults.items()
    }


def _rule(entry: Mapping[str, Any], where: str, *, cbr: bool = False) -> Rule:
    _refuse_unknown(entry, _RULE_KEYS, where)
    targets = entry.get("to")
    if not isinstance(targets, list) or not targets:
        raise ConfigError(f"{where} to: a non-empty array of {{ region, project_id }} tables")
    to: list[Destination] = []
    for i, target in enumerate(targets):
        at = f"{where} to[{i}]"
        if not isinstance(target, Mapping):
            raise ConfigError(f"{at}: a table {{ region = ..., project_id = ... }}")
        _refuse_unknown(target, frozenset({"region", "project_id", "vault_id"}), at)
        vault = target.get("vault_id")
        if vault is not None and not cbr:
            raise ConfigError(f"{at} vault_id: only CBR has vaults (--service cbr)")
        dest = Destination(
            _region(target.get("region"), f"{at} region"),
            _project(target.get("project_id"), f"{at} project_id"),
            None if vault is None else _vault(vault, f"{at} vault_id"),
        )
        if any(d.region == dest.region for d in to):
            raise ConfigError(f"{at}: region {dest.region} is listed twice in one rule")
        to.append(dest)
    conditions = {k: _optional_str(entry, k, where) for k in _RULE_MATCH_KEYS}
    if conditions["source_region"] is not None:
        _region(conditions["source_region"], f"{where} source_region")
        if any(d.region == conditions["source_region"] for d in to):
            raise ConfigError(f"{where}: a destination region equals the source region")
    if conditions["source_project_id"] is not None:
        conditions["source_project_id"] = _project(
            conditions["source_project_id"], f"{where} source_project_id"
        )
    return Rule(tuple(to), **conditions)


def _catch_all(text: str) -> Rule:
    region, sep, project = text.partition("=")
    if not sep:
        raise ConfigError(f"--to {text!r}: expected REGION=PROJECT_ID")
    where = f"--to {text!r}"
    return Rule((Destination(_region(region.strip(), where), _project(project.strip(), where)),))


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``created_since``: an ISO time (naive means UTC) or an age such as ``36h``, ``7d``,
    ``1d12h`` counted back from ``now``."""
    value = text.strip()
    if value and _DURATION.sub("", value).strip() == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
        return (now or datetime.now(UTC)).astimezone(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"created since {text!r}: an ISO time (2026-03-01T00:00:00) or an age (36h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
