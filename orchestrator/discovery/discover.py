"""Discovery: list the estate through the API and turn it into replication pairs.

For each *source* (a project in a region) the items are listed with ``GET /checkpoint_items``,
paged with ``limit``/``marker`` and filtered on the server (``status``, ``resource_type``,
``name`` (fuzzy), ``policy_id``, ``start_time``). Each item then meets the destination
*rules* of the config (``[[discover.rules]]``, see :meth:`DiscoverConfig.from_config`);
every rule that matches names destination regions (and projects) for it. A pair is
skipped when the item already has a replica in that region, or one is being made: the
service would refuse it anyway, and a nightly run should send nothing it does not need.

What the item says about its copies, and what discovery makes of it:

==============================================  ==========================================
the item                                         the pair (item, destination region)
==============================================  ==========================================
a ``replication_records`` entry for the region,  skipped: already replicated
status ``success``
... status ``waiting_replicate``/``replicating``  skipped: in progress
(or a word we do not know)
... only ``fail``/``skip`` entries, or none      sent
no ``replication_records`` at all, and           skipped: in progress (the region is not
``extend_info.copy_status`` waiting/copying      known, and a copy in progress blocks it)
``extend_info.copy_from`` set (it is a replica   not a source (no pairs) unless
itself)                                          ``include_replicas``
status other than ``available``                  not a source (only available items can be
                                                 replicated)
==============================================  ==========================================

Listing is idempotent, so a transient error part way (503, 429, a cut connection) restarts
the listing of that source with backoff; items already seen are not counted twice.

CBR (``service="cbr"``): the backups of every vault of the source project are listed with
``GET /v3/{project}/backups``; each pair also needs the *vault* that receives the copy in its
destination region: a rule's ``to`` entry may name it (``vault_id``), else
``[discover.cbr] destination_vaults = { "cn-east-2" = "<vault id>" }`` does. A destination
region with neither is refused before anything is listed.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import structlog

from orchestrator.atomic_file import replacing
from orchestrator.engine.retry import RetryPolicy, hinted_delay
from orchestrator.errors import ConfigError, TransientApiError
from orchestrator.models import ReplicationTask
from orchestrator.safe_text import csv_row, for_terminal, is_uuid
from orchestrator.service.records import CopyState, RecordReader

__all__ = [
    "CBR_MANIFEST_COLUMNS",
    "MANIFEST_COLUMNS",
    "Destination",
    "DiscoverConfig",
    "Discovery",
    "Filters",
    "ItemLister",
    "Rule",
    "Source",
    "SourceSummary",
    "destinations_for",
    "discover",
    "list_source",
    "pair_state",
    "parse_since",
    "write_manifest",
]

log = structlog.get_logger("orchestrator.discovery.discover")

#: The columns of a discovered manifest: the same as configs/example-manifest.csv.
MANIFEST_COLUMNS: Final = (
    "checkpoint_item_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
)

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
_FILTER_KEYS: Final = frozenset({"status", "resource_type", "name", "policy_id", "created_since"})
_DISCOVER_KEYS: Final = _FILTER_KEYS | {
    "page_size",
    "include_replicas",
    "sources",
    "rules",
    "cbr",
    "select",
}
#: The columns of a discovered CBR manifest (see orchestrator/engine/cbr_manifest.py).
CBR_MANIFEST_COLUMNS: Final = (
    "backup_id",
    "project_id",
    "source_region",
    "destination_region",
    "destination_project_id",
    "destination_vault_id",
)
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
#: ``select``: every available backup lacking a copy, or only each resource's newest.
SELECT_MODES: Final = ("all", "newest")

ALREADY_REPLICATED: Final = "replicated"
IN_PROGRESS: Final = "in_progress"


class ItemLister(Protocol):
    """What discovery needs of the client (:meth:`CsbsClient.iter_items`)."""

    def iter_items(
        self,
        project_id: str,
        *,
        region: str | None = None,
        page_size: int = 1000,
        **filters: str | int | bool,
    ) -> AsyncIterator[dict[str, Any]]: ...


# --------------------------------------------------------------------------- configuration


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
        if self.name is not None and not fnmatch.fnmatchcase(_text(item.get("name")), self.name):
            return False
        if self.resource_name is not None and not fnmatch.fnmatchcase(
            _resource_name(item), self.resource_name
        ):
            return False
        return self.resource_type is None or _resource_type(item) == self.resource_type


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
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
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


# --------------------------------------------------------------------------- the item


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _extend(item: Mapping[str, Any]) -> Mapping[str, Any]:
    extend = item.get("extend_info")
    return extend if isinstance(extend, Mapping) else {}


def _resource_name(item: Mapping[str, Any]) -> str:
    return _text(item.get("resource_name")) or _text(_extend(item).get("resource_name"))


def _resource_type(item: Mapping[str, Any]) -> str:
    return _text(item.get("resource_type")) or _text(_extend(item).get("resource_type"))


def pair_state(
    item: Mapping[str, Any], region: str, reader: RecordReader | None = None
) -> str | None:
    """``"replicated"``, ``"in_progress"`` or None (worth sending) for one destination.

    Records speak the record vocabulary, ``extend_info.copy_status`` the item's; both are
    read by :class:`RecordReader` (a failed or skipped copy is worth sending again)."""
    reader = reader or RecordReader()
    records = item.get("replication_records")
    if isinstance(records, list):
        result: str | None = None
        for record in records:
            if not isinstance(record, Mapping) or record.get("destination_region") != region:
                continue
            state = reader.record_state(record)
            if state is CopyState.SUCCESS:
                return ALREADY_REPLICATED
            if state is CopyState.RUNNING:
                result = IN_PROGRESS  # waiting, replicating, or a word we do not know: live
        return result
    copy_state = reader.state(_extend(item).get("copy_status"))
    return IN_PROGRESS if copy_state is CopyState.RUNNING else None


# --------------------------------------------------------------------------- discovery


@dataclass(slots=True)
class SourceSummary:
    """Counts for one source. Items: listed, not available, replicas, matched by a rule.
    Pairs: written, skipped as already replicated, skipped as in progress."""

    source: Source
    listed: int = 0
    not_available: int = 0
    replicas: int = 0
    matched: int = 0
    pairs: int = 0
    replicated: int = 0
    in_progress: int = 0
    invalid_ids: int = 0
    """Listed items whose id is no UUID: never written (a manifest cell a spreadsheet may run)."""
    superseded: int = 0

    def line(self, done: str = "written") -> str:
        """One line for a person; ``done`` says what became of the pairs ("written")."""
        return (
            f"{self.source}: listed {self.listed}, matched {self.matched}, skipped "
            f"{self.replicated} already replicated / {self.in_progress} in progress"
            + (f" / {self.superseded} older than a newer backup" if self.superseded else "")
            + f", {self.pairs} pairs {done}"
            + (f" ({self.replicas} replicas ignored)" if self.replicas else "")
            + (f" ({self.not_available} not available)" if self.not_available else "")
            + (f" ({self.invalid_ids} with an invalid id skipped)" if self.invalid_ids else "")
        )


@dataclass(slots=True)
class Discovery:
    tasks: list[ReplicationTask]
    summaries: list[SourceSummary]


Sleep = Callable[[float], Awaitable[None]]


async def discover(
    client: ItemLister,
    config: DiscoverConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = anyio.sleep,
) -> Discovery:
    """List every source and apply the rules; the pairs worth sending, and counts."""
    config.check()
    tasks: list[ReplicationTask] = []
    summaries: list[SourceSummary] = []
    seen_pairs: set[tuple[str, str, str]] = set()
    reader = RecordReader()
    newest = _Newest() if config.select == "newest" else None
    for source in dict.fromkeys(config.sources):  # each source once, in order
        summary = SourceSummary(source)
        async for item in _list(client, source, config, retry or RetryPolicy(), sleep):
            summary.listed += 1
            if not is_uuid(item["id"]):
                # The id goes into a manifest and back into a URL: only the service's own
                # UUID form is trusted; anything else (a formula, escape codes) is skipped.
                summary.invalid_ids += 1
                log.warning(
                    "discover.invalid_id", source=str(source), item_id=for_terminal(item["id"], 80)
                )
                continue
            if newest is not None:
                newest.add(item, source, config, summary, reader)
                continue
            for task in _pairs_of(item, source, config, summary, reader):
                if task.key not in seen_pairs:
                    seen_pairs.add(task.key)
                    tasks.append(task)
                    summary.pairs += 1
        if newest is None:
            log.info("discover.source", source=str(source), **_counts(summary))
        summaries.append(summary)
    if newest is not None:
        tasks = newest.tasks({s.source: s for s in summaries})
        for summary in summaries:
            log.info("discover.source", source=str(summary.source), **_counts(summary))
    return Discovery(tasks, summaries)


def _created(item: Mapping[str, Any]) -> float:
    """The item's creation time as Unix seconds (the API's UTC without a zone); -inf when
    unreadable, so such an item never displaces a readable one."""
    try:
        moment = datetime.fromisoformat(_text(item.get("created_at")))
    except ValueError:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(slots=True)
class _Best:
    """One (resource, destination region) under ``select = "newest"``."""

    source: Source
    task: ReplicationTask | None = None
    newest: float = float("-inf")  # creation time of the newest sendable backup
    held: float = float("-inf")  # of the newest backup copied, or being copied, there
    candidates: int = 0


class _Newest:
    """Keeps, per resource and region, only the newest available backup and the newest one
    the region holds (or is receiving); memory grows with resources, not backups."""

    def __init__(self) -> None:
        self._best: dict[tuple[str, str, str], _Best] = {}

    def add(
        self,
        item: Mapping[str, Any],
        source: Source,
        config: DiscoverConfig,
        summary: SourceSummary,
        reader: RecordReader,
    ) -> None:
        if item.get("status") != "available":
            summary.not_available += 1
            return
        if not config.include_replicas and _text(_extend(item).get("copy_from")):
            summary.replicas += 1
            return
        targets = destinations_for(item, source, config)
        if not targets:
            return
        summary.matched += 1
        created = _created(item)
        item_id = str(item["id"]).lower()
        resource = _text(item.get("resource_id")) or item_id
        for region, dest in targets.items():
            key = (source.project_id, resource, region)
            best = self._best.get(key)
            if best is None:
                best = self._best[key] = _Best(source)
            state = pair_state(item, region, reader)
            if state is not None:
                best.held = max(best.held, created)
                if state == ALREADY_REPLICATED:
                    summary.replicated += 1
                else:
                    summary.in_progress += 1
                continue
            best.candidates += 1
            if best.task is None or created > best.newest:
                best.newest = created
                best.task = _task(item_id, source, dest, config)

    def tasks(self, summaries: Mapping[Source, SourceSummary]) -> list[ReplicationTask]:
        """The pairs worth sending, the largest lag removed first: a resource with no copy
        there at all, then by how much newer the backup is than the copy held."""
        chosen: list[tuple[tuple[bool, float], ReplicationTask]] = []
        for best in self._best.values():
            summary = summaries[best.source]
            if best.task is None:
                continue
            if best.newest <= best.held:
                summary.superseded += best.candidates
                continue
            summary.superseded += best.candidates - 1
            summary.pairs += 1
            chosen.append(((best.held == float("-inf"), best.newest - best.held), best.task))
        chosen.sort(key=lambda pair: pair[0], reverse=True)
        return [task for _, task in chosen]


def _counts(summary: SourceSummary) -> dict[str, int]:
    return {
        "listed": summary.listed,
        "matched": summary.matched,
        "replicated": summary.replicated,
        "in_progress": summary.in_progress,
        "superseded": summary.superseded,
        "pairs": summary.pairs,
    }


async def _list(
    client: ItemLister, source: Source, config: DiscoverConfig, policy: RetryPolicy, sleep: Sleep
) -> AsyncIterator[dict[str, Any]]:
    """Every listed item once; a transient failure restarts the listing after a backoff."""
    seen: set[str] = set()
    attempt = 0
    while True:
        attempt += 1
        try:
            async for item in client.iter_items(
                source.project_id,
                region=source.region,
                page_size=config.page_size,
                **config.filters.query(),
            ):
                item_id = item.get("id") if isinstance(item, dict) else None
                if not isinstance(item_id, str) or item_id in seen:
                    continue
                seen.add(item_id)
                yield item
        except TransientApiError as exc:
            if attempt >= policy.max_attempts:
                raise
            delay = hinted_delay(policy, exc, policy.backoff(attempt, random.random), random.random)
            log.warning(
                "discover.retry", source=str(source), attempt=attempt, wait_s=delay, error=str(exc)
            )
            await sleep(delay)
            continue
        return


def list_source(
    client: ItemLister,
    source: Source,
    config: DiscoverConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Sleep = anyio.sleep,
) -> AsyncIterator[dict[str, Any]]:
    """Every item of one source once, paged, restarted with backoff on a transient error
    (what ``coverage`` lists too)."""
    return _list(client, source, config, retry or RetryPolicy(), sleep)


def destinations_for(
    item: Mapping[str, Any], source: Source, config: DiscoverConfig
) -> dict[str, Destination]:
    """Region -> destination of every rule matching ``item`` (the first rule naming a region
    wins); never the item's own region."""
    targets: dict[str, Destination] = {}
    for rule in config.rules:
        if rule.matches(source, item):
            for dest in rule.to:
                targets.setdefault(dest.region, dest)
    targets.pop(source.region, None)  # never "replicate" into the item's own region
    return targets


def _pairs_of(
    item: Mapping[str, Any],
    source: Source,
    config: DiscoverConfig,
    summary: SourceSummary,
    reader: RecordReader,
) -> Iterable[ReplicationTask]:
    if item.get("status") != "available":
        summary.not_available += 1
        return
    if not config.include_replicas and _text(_extend(item).get("copy_from")):
        summary.replicas += 1
        return
    targets = destinations_for(item, source, config)
    if not targets:
        return
    summary.matched += 1
    item_id = str(item["id"]).lower()
    for region, dest in targets.items():
        state = pair_state(item, region, reader)
        if state == ALREADY_REPLICATED:
            summary.replicated += 1
        elif state == IN_PROGRESS:
            summary.in_progress += 1
        else:
            yield _task(item_id, source, dest, config)


def _task(
    item_id: str, source: Source, dest: Destination, config: DiscoverConfig
) -> ReplicationTask:
    """The pair of ``item_id`` to ``dest``; for CBR with the destination vault."""
    cbr = config.service == "cbr"
    return ReplicationTask(
        checkpoint_item_id=item_id,
        project_id=source.project_id,
        destination_region=dest.region,
        destination_project_id=dest.project_id,
        source_region=source.region,
        destination_vault_id=(dest.vault_id or config.vaults.get(dest.region)) if cbr else None,
    )


# --------------------------------------------------------------------------- output


def write_manifest(
    tasks: Iterable[ReplicationTask], path: str | os.PathLike[str], *, service: str = "csbs"
) -> int:
    """Write the pairs as a CSV manifest (replaced atomically); returns the rows written.
    ``service="cbr"``: a CBR manifest (backups and destination vaults)."""
    if service == "cbr":
        return _write_rows(
            path,
            CBR_MANIFEST_COLUMNS,
            (
                (
                    t.checkpoint_item_id,
                    t.project_id,
                    t.source_region or "",
                    t.destination_region,
                    t.destination_project_id,
                    t.destination_vault_id or "",
                )
                for t in tasks
            ),
        )
    return _write_rows(
        path,
        MANIFEST_COLUMNS,
        (
            (
                t.checkpoint_item_id,
                t.project_id,
                t.source_region or "",
                t.destination_region,
                t.destination_project_id,
            )
            for t in tasks
        ),
    )


def _write_rows(
    path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Sequence[str]]
) -> int:
    target = Path(path)
    count = 0
    try:
        with replacing(target) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(csv_row(row))
                count += 1
            handle.flush()
            handle.detach()  # the file stays open for replacing() to fsync and rename
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the manifest: {exc.strerror}") from None
    return count
