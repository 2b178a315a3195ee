"""Coverage: per protected resource and destination region, the recovery point the DR region
holds, how old it is, and why it is not newer.

A pure fold. The caller lists the estate (items with their replication records), reduces each
item to an :class:`Observed` with :func:`~.coverage_input.observe`, and feeds it to
:class:`CoverageFold` together with the tool's own history
(:func:`~.coverage_input.ledger_facts` over any number of ledgers). The
fold keeps one small summary per (resource, region), never the items, so memory grows with
the number of resources, not backups. :meth:`CoverageFold.result` then judges every cell
against the RPO at one instant ``now`` (passed in: tests use fake time).

States, decided in this order:

===========  ==================================================================
``covered``  a copy to the region succeeded and its backup is at most ``rpo`` old
``running``  not covered, and a copy of a newer backup is waiting or copying
``failing``  not covered, and the latest attempt for a newer backup failed (a
             replication record ``fail``, or the ledger's ``failed``/``gave_up``/
             tracked ``fail``); the reason says which and when
``stale``    a copy exists but is older than ``rpo``
``missing``  no copy to that region ever succeeded (or the source has no available
             backup to copy)
===========  ==================================================================

The lag is ``now`` minus the creation time of the newest *copied* backup: what would be lost
if the source region went away now. It is None when nothing was ever copied.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from orchestrator.insight.coverage_input import CopySeen, LedgerFact, Observed, day
from orchestrator.service.records import CopyState

__all__ = ["STATE_ORDER", "Coverage", "CoverageFold", "CoverageRow", "State", "format_age"]


class State(enum.StrEnum):
    COVERED = "covered"
    STALE = "stale"
    MISSING = "missing"
    FAILING = "failing"
    RUNNING = "running"


#: Display order: the worst news first.
STATE_ORDER: Final = (State.FAILING, State.MISSING, State.STALE, State.RUNNING, State.COVERED)


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _backup(created: float | None) -> str:
    return "the backup" if created is None else f"the {_stamp(created)} backup"


def format_age(seconds: float | None) -> str:
    """``31h``, ``4d2h``, ``12m``: lags for people."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h"
    return f"{rest // 60}m"


# --------------------------------------------------------------------------- the fold


class _Cell:
    """One (resource, region): the newest available backup, the newest copied one, and the
    latest attempt that went wrong or is still going."""

    __slots__ = (
        "copied_at",
        "copied_id",
        "fail_at",
        "fail_backup_at",
        "fail_reason",
        "newest_at",
        "newest_id",
        "ok_at",
        "running_backup_at",
        "running_id",
        "skipped",
    )

    def __init__(self) -> None:
        self.newest_id: str | None = None
        self.newest_at: float | None = None
        self.copied_id: str | None = None
        self.copied_at: float | None = None
        self.running_id: str | None = None
        self.running_backup_at: float | None = None
        self.fail_at = -1.0
        self.fail_backup_at: float | None = None
        self.fail_reason = ""
        self.ok_at = -1.0  # the latest attempt that did not fail
        self.skipped = False


def _newer(candidate: float | None, than: float | None) -> bool:
    return candidate is not None and (than is None or candidate > than)


class _Resource:
    __slots__ = ("cells", "name", "project_id", "source_region")

    def __init__(self, project_id: str, source_region: str, name: str) -> None:
        self.project_id = project_id
        self.source_region = source_region
        self.name = name
        self.cells: dict[str, _Cell] = {}


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One resource x destination region, judged."""

    project_id: str
    source_region: str
    resource_id: str
    resource_name: str
    destination_region: str
    state: State
    newest_backup_id: str | None
    newest_backup_at: float | None
    copied_backup_id: str | None
    copied_backup_at: float | None
    lag_s: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Coverage:
    """Every row, judged at ``now`` against ``rpo_s``."""

    now: float
    rpo_s: float
    rows: tuple[CoverageRow, ...]

    @property
    def all_covered(self) -> bool:
        return all(row.state is State.COVERED for row in self.rows)

    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({row.destination_region for row in self.rows}))

    def counts(self) -> dict[str, dict[State, int]]:
        """Region -> state -> resources, every state present (zeros included)."""
        out: dict[str, dict[State, int]] = {r: dict.fromkeys(State, 0) for r in self.regions()}
        for row in self.rows:
            out[row.destination_region][row.state] += 1
        return out

    def worst_lag(self) -> dict[str, float | None]:
        """Region -> the largest lag of a resource holding a copy there (None: no copy)."""
        out: dict[str, float | None] = dict.fromkeys(self.regions())
        for row in self.rows:
            current = out[row.destination_region]
            if row.lag_s is not None and (current is None or row.lag_s > current):
                out[row.destination_region] = row.lag_s
        return out

    def worst(self, limit: int = 20) -> list[CoverageRow]:
        """The most exposed rows first: never copied, then the largest lag."""
        exposed = [row for row in self.rows if row.state is not State.COVERED]
        exposed.sort(key=_exposure, reverse=True)
        return exposed[:limit]


def _exposure(row: CoverageRow) -> tuple[int, float, str]:
    return (row.lag_s is None, row.lag_s or 0.0, row.resource_id)


class CoverageFold:
    """Feed :class:`Observed` items in any order; :meth:`result` judges them."""

    def __init__(self, facts: Mapping[tuple[str, str], LedgerFact] | None = None) -> None:
        self._facts = facts or {}
        self._resources: dict[tuple[str, str], _Resource] = {}
        self.items = 0

    def add(self, seen: Observed) -> None:
        if not seen.targets:
            return
        self.items += 1
        key = (seen.project_id, seen.resource_id)
        resource = self._resources.get(key)
        if resource is None:
            resource = _Resource(seen.project_id, seen.source_region, seen.resource_name)
            self._resources[key] = resource
        elif seen.resource_name and not resource.name:
            resource.name = seen.resource_name
        for region in seen.targets:
            cell = resource.cells.get(region)
            if cell is None:
                cell = resource.cells[region] = _Cell()
            self._fold(cell, seen, region, single=len(seen.targets) == 1)

    def _fold(self, cell: _Cell, seen: Observed, region: str, *, single: bool) -> None:
        created = seen.created_at
        if seen.available and (cell.newest_at is None or _newer(created, cell.newest_at)):
            cell.newest_id, cell.newest_at = seen.item_id, created
        for copy in seen.copies:
            if copy.region != region and not (copy.region is None and single):
                continue
            self._copy(cell, seen, copy)
        fact = self._facts.get((seen.item_id, region))
        if fact is not None:
            if fact.failed:
                self._failure(cell, fact.at, created, fact.reason)
            else:
                cell.ok_at = max(cell.ok_at, fact.at)

    def _copy(self, cell: _Cell, seen: Observed, copy: CopySeen) -> None:
        at = copy.at if copy.at is not None else 0.0
        created = seen.created_at
        if copy.state is CopyState.SUCCESS:
            cell.ok_at = max(cell.ok_at, at)
            if cell.copied_at is None or _newer(created, cell.copied_at):
                cell.copied_id, cell.copied_at = seen.item_id, created
        elif copy.state is CopyState.RUNNING:  # waiting, copying, or a word nobody knows
            cell.ok_at = max(cell.ok_at, at)
            if cell.running_id is None or _newer(created, cell.running_backup_at):
                cell.running_id, cell.running_backup_at = seen.item_id, created
        elif copy.state is CopyState.FAILED:
            detail = f" ({copy.reason})" if copy.reason else ""
            when = f" on {day(at)}" if copy.at is not None else ""
            self._failure(cell, at, created, f"copy of {_backup(created)} failed{detail}{when}")
        elif copy.state is CopyState.SKIPPED:
            cell.skipped = True

    @staticmethod
    def _failure(cell: _Cell, at: float, backup_at: float | None, reason: str) -> None:
        if at >= cell.fail_at:
            cell.fail_at, cell.fail_backup_at, cell.fail_reason = at, backup_at, reason

    def rows(self, *, now: float, rpo_s: float) -> Iterator[CoverageRow]:
        for (project_id, resource_id), resource in self._resources.items():
            for region in sorted(resource.cells):
                cell = resource.cells[region]
                state, lag, reason = _judge(cell, now, rpo_s)
                yield CoverageRow(
                    project_id=project_id,
                    source_region=resource.source_region,
                    resource_id=resource_id,
                    resource_name=resource.name,
                    destination_region=region,
                    state=state,
                    newest_backup_id=cell.newest_id,
                    newest_backup_at=cell.newest_at,
                    copied_backup_id=cell.copied_id,
                    copied_backup_at=cell.copied_at,
                    lag_s=lag,
                    reason=reason,
                )

    def result(self, *, now: float, rpo_s: float) -> Coverage:
        return Coverage(now, rpo_s, tuple(self.rows(now=now, rpo_s=rpo_s)))


def _judge(cell: _Cell, now: float, rpo_s: float) -> tuple[State, float | None, str]:
    lag = None if cell.copied_at is None else max(0.0, now - cell.copied_at)
    if lag is not None and lag <= rpo_s:
        return State.COVERED, lag, ""
    if cell.running_id is not None and _newer(cell.running_backup_at, cell.copied_at):
        return State.RUNNING, lag, f"copy of {_backup(cell.running_backup_at)} in progress"
    failed_newer = cell.fail_backup_at is None or _newer(cell.fail_backup_at, cell.copied_at)
    if cell.fail_reason and cell.fail_at >= cell.ok_at and failed_newer:
        return State.FAILING, lag, cell.fail_reason
    if cell.newest_id is None and lag is None:
        return State.MISSING, None, "no available backup in the source region"
    skipped = "; the last copy was skipped by the service" if cell.skipped else ""
    if lag is None:
        return State.MISSING, None, "never copied" + skipped
    newest = (
        f"; newest backup ({_stamp(cell.newest_at)}) not copied"
        if cell.newest_at is not None and _newer(cell.newest_at, cell.copied_at)
        else ""
    )
    return State.STALE, lag, f"newest copy is {format_age(lag)} old{newest}{skipped}"
