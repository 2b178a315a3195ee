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
from orchestrator.errors import ConfigError, TransientApiError
from orchestrator.models import ReplicationTask
from orchestrator.retry import RetryPolicy, hinted_delay
from orchestrator.service.records import CopyState, RecordReader

__all__ = [
    "MANIFEST_COLUMNS",
    "Destination",
    "DiscoverConfig",
    "Discovery",
    "Filters",
    "ItemLister",
    "Rule",
    "Source",
    "SourceSummary",
    "discover",
    "pair_state",
    "parse_since",
    "write_manifest",
]

log = structlog.get_logger("orchestrator.discover")

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
_DISCOVER_KEYS: Final = _FILTER_KEYS | {"page_size", "include_replicas", "sources", "rules"}

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

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        default_source: Source | None = None,
        now: datetime | None = None,
        path: str | None = None,
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
            _rule(entry, f"{where} rules[{i}]")
            for i, entry in enumerate(_table_list(section.get("rules", []), where, "rules"))
        )
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
        return cls(sources, rules, filters, page_size, include)

    def with_overrides(
        self,
        *,
        filters: Mapping[str, str | None],
        to: Sequence[str] = (),
        now: datetime | None = None,
    ) -> DiscoverConfig:
        """Command-line filters on top (``status="any"`` lists every status, as in the
        config); ``to`` adds a catch-all rule per ``REGION=PROJECT_ID``."""
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
        return replace(self, filters=replace(self.filters, **changes), rules=rules)

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


def _rule(entry: Mapping[str, Any], where: str) -> Rule:
    _refuse_unknown(entry, _RULE_KEYS, where)
    targets = entry.get("to")
    if not isinstance(targets, list) or not targets:
        raise ConfigError(f"{where} to: a non-empty array of {{ region, project_id }} tables")
    to: list[Destination] = []
    for i, target in enumerate(targets):
        at = f"{where} to[{i}]"
        if not isinstance(target, Mapping):
            raise ConfigError(f"{at}: a table {{ region = ..., project_id = ... }}")
        _refuse_unknown(target, frozenset({"region", "project_id"}), at)
        dest = Destination(
            _region(target.get("region"), f"{at} region"),
            _project(target.get("project_id"), f"{at} project_id"),
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

    def line(self) -> str:
        return (
            f"{self.source}: listed {self.listed}, matched {self.matched}, skipped "
            f"{self.replicated} already replicated / {self.in_progress} in progress, "
            f"{self.pairs} pairs written"
            + (f" ({self.replicas} replicas ignored)" if self.replicas else "")
            + (f" ({self.not_available} not available)" if self.not_available else "")
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
    for source in dict.fromkeys(config.sources):  # each source once, in order
        summary = SourceSummary(source)
        async for item in _list(client, source, config, retry or RetryPolicy(), sleep):
            summary.listed += 1
            for task in _pairs_of(item, source, config, summary, reader):
                if task.key not in seen_pairs:
                    seen_pairs.add(task.key)
                    tasks.append(task)
                    summary.pairs += 1
        log.info("discover.source", source=str(source), **_counts(summary))
        summaries.append(summary)
    return Discovery(tasks, summaries)


def _counts(summary: SourceSummary) -> dict[str, int]:
    return {
        "listed": summary.listed,
        "matched": summary.matched,
        "replicated": summary.replicated,
        "in_progress": summary.in_progress,
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
    targets: dict[str, str] = {}  # region -> project: the first rule naming a region wins
    for rule in config.rules:
        if rule.matches(source, item):
            for dest in rule.to:
                targets.setdefault(dest.region, dest.project_id)
    targets.pop(source.region, None)  # never "replicate" into the item's own region
    if not targets:
        return
    summary.matched += 1
    item_id = str(item["id"]).lower()
    for region, project in targets.items():
        state = pair_state(item, region, reader)
        if state == ALREADY_REPLICATED:
            summary.replicated += 1
        elif state == IN_PROGRESS:
            summary.in_progress += 1
        else:
            yield ReplicationTask(
                checkpoint_item_id=item_id,
                project_id=source.project_id,
                destination_region=region,
                destination_project_id=project,
                source_region=source.region,
            )


# --------------------------------------------------------------------------- output


def write_manifest(tasks: Iterable[ReplicationTask], path: str | os.PathLike[str]) -> int:
    """Write the pairs as a CSV manifest (replaced atomically); returns the rows written."""
    target = Path(path)
    count = 0
    try:
        with replacing(target) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS)
            for t in tasks:
                writer.writerow(
                    (
                        t.checkpoint_item_id,
                        t.project_id,
                        t.source_region or "",
                        t.destination_region,
                        t.destination_project_id,
                    )
                )
                count += 1
            handle.flush()
            handle.detach()  # the file stays open for replacing() to fsync and rename
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the manifest: {exc.strerror}") from None
    return count
