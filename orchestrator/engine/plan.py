"""What a run will send: manifest rows deduplicated, conflicts found, the ledger consulted.

A pair (source project, checkpoint item, destination region) is replicated at most once per
run. Rows that repeat a pair exactly (same destination project) collapse into the first one
and count as *duplicates*; the first row's other fields (name, description, ...) win. Rows
that repeat a pair with a *different* destination project are a *conflict*: every row of
that pair is reported and none is sent, because guessing which project was meant could copy
a backup into the wrong account.

Then the ledger (:class:`~orchestrator.ledger.history.History`) decides per pair: send,
reconcile first, skip, or retry a failed copy (:mod:`orchestrator.engine.plan_decision`).

Two streaming passes, so that nothing is sent before every conflict is known and a
million-row manifest is never held in memory: :meth:`Plan.from_manifest` validates and
indexes (pass 1), :meth:`Plan.work` streams the rows to send (pass 2), reading and
validating only the lines pass 1 marked. The index holds, per pair, a compact key (see
:class:`~orchestrator.ledger.format.PairKeys`) and one int; the decision per manifest line is one
byte. When pass 1 finds conflicts, one more pass collects their rows for the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from orchestrator.engine.cbr_manifest import iter_cbr_fields, iter_cbr_manifest
from orchestrator.engine.manifest import iter_manifest, iter_manifest_fields
from orchestrator.engine.manifest_pin import ManifestPin
from orchestrator.engine.manifest_rows import RowError, RowFields, is_region_name
from orchestrator.engine.plan_decision import (
    MARK_RECONCILE,
    MARK_SEND,
    MARK_SKIP,
    MARKS,
    SEND,
    RegionCounts,
    decide,
    tally,
)
from orchestrator.errors import ManifestError
from orchestrator.ledger.format import PairKeys
from orchestrator.ledger.history import ABSENT as _ABSENT
from orchestrator.ledger.history import History
from orchestrator.models import PairKey, ReplicationTask, WorkItem

__all__ = ["Conflict", "Plan", "require_rows"]

#: Row errors kept for the ledger and the report; past this only their number is kept.
MAX_REJECTED: Final = 10_000
#: Invalid rows and conflicts that a run's error, warning or summary names (`report` and
#: `plan` list more).
SHOWN_PROBLEMS: Final = 5


@dataclass(frozen=True, slots=True)
class Conflict:
    """A pair listed with different destination projects. ``lines[i]`` asked for
    ``destination_project_ids[i]``; none of them is sent."""

    key: PairKey
    lines: tuple[int, ...]
    destination_project_ids: tuple[str, ...]


# An index entry packed in one int: position of the pair's first row, rows seen (saturating),
# a conflict flag, and a 64-bit hash of the first row's destination project.
_DEST_BITS: Final = 64
_DEST_MASK: Final = (1 << _DEST_BITS) - 1
_CONFLICT: Final = 1 << _DEST_BITS
_COUNT_SHIFT: Final = _DEST_BITS + 1
_COUNT_BITS: Final = 24
_COUNT_ONE: Final = 1 << _COUNT_SHIFT
_COUNT_MAX: Final = (1 << _COUNT_BITS) - 1
_POS_SHIFT: Final = _COUNT_SHIFT + _COUNT_BITS

#: Pass 1's stream (valid rows as plain tuples) and pass 2's (tasks of the marked rows).
Rows = Callable[[], Iterator[RowFields | RowError]]
Tasks = Callable[[bytearray], Iterator[ReplicationTask | RowError]]


class Plan:
    """Pass 1 over the rows, and the means of pass 2 (:meth:`work`)."""

    def __init__(
        self,
        rows: Rows,
        tasks: Tasks,
        *,
        by_line: bool,
        history: History | None,
        retry_failed: bool,
        max_rejected: int = MAX_REJECTED,
    ) -> None:
        """Use :meth:`from_manifest` or :meth:`from_tasks`; this runs pass 1 over ``rows()``.
        ``by_line`` keys decisions by manifest line (else by position in the stream)."""
        self._rows = rows
        self._tasks = tasks
        self._by_line = by_line
        self._history = history
        self._retry_failed = retry_failed
        self._max_rejected = max_rejected
        self._keys = history.keys if history is not None else PairKeys()
        #: The manifest's bytes as pass 1 read them (None for discovered tasks).
        self.pin: ManifestPin | None = None
        self._marks = bytearray()
        self.rejected: list[RowError] = []
        self.rejected_dropped = 0
        self.invalid_unplaced = 0  # invalid rows without a usable destination region
        self.by_region: dict[str, RegionCounts] = {}
        self.conflicts: list[Conflict] = []
        conflict_keys = self._index()
        if conflict_keys:
            self.conflicts = self._collect_conflicts(conflict_keys)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_manifest(
        cls,
        path: str | os.PathLike[str],
        *,
        default_project_id: str | None,
        history: History | None = None,
        retry_failed: bool = False,
        max_rejected: int = MAX_REJECTED,
        service: str = "csbs",
    ) -> Plan:
        """Validate and index the manifest (pass 1); :meth:`work` reads it again.

        Raises :class:`ManifestError` for a manifest that cannot be read at all; bad rows
        end up in :attr:`rejected`. Every later pass reads the manifest through the
        :attr:`pin` pass 1 recorded, so it sees pass 1's bytes or stops
        (:class:`~orchestrator.errors.ManifestChangedError`). ``service="cbr"`` reads a CBR
        manifest (backups and destination vaults, see :mod:`orchestrator.engine.cbr_manifest`).
        """
        name = os.fspath(path)
        pin = ManifestPin(name)
        cbr = service == "cbr"

        def rows() -> Iterator[RowFields | RowError]:
            if cbr:
                return iter_cbr_fields(name, default_project_id=default_project_id, pin=pin)
            return iter_manifest_fields(name, default_project_id=default_project_id, pin=pin)

        def tasks(marks: bytearray) -> Iterator[ReplicationTask | RowError]:
            if cbr:
                return iter_cbr_manifest(
                    name, default_project_id=default_project_id, only_lines=marks, pin=pin
                )
            return iter_manifest(
                name, default_project_id=default_project_id, only_lines=marks, pin=pin
            )

        plan = cls(
            rows,
            tasks,
            by_line=True,
            history=history,
            retry_failed=retry_failed,
            max_rejected=max_rejected,
        )
        plan.pin = pin
        return plan

    @classmethod
    def from_tasks(
        cls,
        tasks: Iterable[ReplicationTask],
        *,
        history: History | None = None,
        retry_failed: bool = False,
    ) -> Plan:
        """Plan tasks discovered from the service (held in memory)."""
        kept: Sequence[ReplicationTask] = tasks if isinstance(tasks, Sequence) else list(tasks)

        def rows() -> Iterator[RowFields | RowError]:
            for t in kept:
                yield (
                    t.checkpoint_item_id,
                    t.project_id,
                    t.destination_region,
                    t.destination_project_id,
                    t.source_region,
                    t.name,
                    t.description,
                    t.enable_acceleration,
                    t.line,
                )

        def all_tasks(marks: bytearray) -> Iterator[ReplicationTask | RowError]:
            return iter(kept)  # work() picks by position

        return cls(rows, all_tasks, by_line=False, history=history, retry_failed=retry_failed)

    # --- results ------------------------------------------------------------------------

    @property
    def totals(self) -> RegionCounts:
        """All regions added up, with the invalid rows that have no region."""
        total = RegionCounts(invalid=self.invalid_unplaced)
        for counts in self.by_region.values():
            total.add(counts)
        return total

    @property
    def regions(self) -> list[str]:
        """Destination regions with something to send, sorted."""
        return sorted(r for r, c in self.by_region.items() if c.to_send)

    @property
    def problem_count(self) -> int:
        """Invalid rows (kept or not) and conflicting pairs."""
        return len(self.rejected) + self.rejected_dropped + len(self.conflicts)

    def problems(self, limit: int = SHOWN_PROBLEMS) -> list[str]:
        """The first ``limit`` invalid rows and conflicting pairs, a line each, for a person:
        ``file:line: field 'name': what to fix``."""
        lines = [str(row) for row in self.rejected[:limit]]
        for conflict in self.conflicts[: max(0, limit - len(lines))]:
            _, item_id, region = conflict.key
            lines.append(
                f"lines {', '.join(map(str, conflict.lines))}: the pair {item_id} -> {region} "
                "is listed with different destination projects"
            )
        return lines

    def regions_named(self) -> set[str]:
        """Every source and destination region a valid row names, done or not: one more pass
        over the rows (for the ``[connection.endpoints]`` check, only when it has keys)."""
        named: set[str] = set()
        for row in self._rows():
            if not isinstance(row, RowError):
                named.add(row[2])
                if row[4]:
                    named.add(row[4])
        return named

    def routes(self) -> dict[tuple[str | None, str], tuple[int, str]]:
        """Pairs to send per (row's source region or None, destination region), each with
        one source project of that route: one more pass over the rows.

        For ``plan``, which checks every route against the service's replication
        capabilities; a run never pays for it.
        """
        found: dict[tuple[str | None, str], tuple[int, str]] = {}
        marks = self._marks
        for ordinal, row in enumerate(self._rows()):
            if isinstance(row, RowError):
                continue
            position = row[8] if self._by_line else ordinal
            if position < len(marks) and marks[position]:
                route = (row[4], row[2])
                count, project = found.get(route, (0, row[1]))
                found[route] = (count + 1, project)
        return found

    def destinations(self) -> dict[tuple[str, str], tuple[int, str]]:
        """Pairs to send per (destination region, destination), each with the pair's source
        project: one more pass over the rows, for ``plan`` (a CBR destination is
        ``project/vault``, see :func:`~orchestrator.engine.cbr_manifest.iter_cbr_fields`)."""
        found: dict[tuple[str, str], tuple[int, str]] = {}
        marks = self._marks
        for ordinal, row in enumerate(self._rows()):
            if isinstance(row, RowError):
                continue
            position = row[8] if self._by_line else ordinal
            if position < len(marks) and marks[position]:
                key = (row[2], row[3])
                count, project = found.get(key, (0, row[1]))
                found[key] = (count + 1, project)
        return found

    def first_lines(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The manifest line of the first pair to send per key of ``keys`` (as in
        :meth:`destinations`): where a problem with that destination is to be fixed. One more
        pass over the rows, only when there is such a problem."""
        found: dict[tuple[str, str], int] = {}
        marks = self._marks
        for ordinal, row in enumerate(self._rows()):
            if isinstance(row, RowError) or (row[2], row[3]) not in keys:
                continue
            position = row[8] if self._by_line else ordinal
            if position < len(marks) and marks[position]:
                found.setdefault((row[2], row[3]), row[8])
        return found

    def work(self) -> Generator[WorkItem]:
        """Pass 2: the tasks to send, in manifest order, each pair once.

        Raises :class:`ManifestError` if the manifest changed since pass 1.
        """
        if not any(c.to_send for c in self.by_region.values()):
            return
        marks = self._marks
        for position, row in enumerate(self._tasks(marks)):
            if isinstance(row, RowError):
                raise ManifestError(
                    row.path, row.line, None, "the manifest changed while the run was planned"
                )
            mark = marks[row.line if self._by_line else position]
            if mark:
                yield WorkItem(row, mark == MARK_RECONCILE)

    # --- pass 1 -------------------------------------------------------------------------

    def _index(self) -> set[bytes]:
        """Validate, deduplicate and decide; returns the keys of conflicting pairs.

        The loop runs once per manifest row, so the common case (a new pair the ledger
        does not know) is written out inline.
        """
        index: dict[bytes, int] = {}
        conflict_keys: set[bytes] = set()
        marks = self._marks
        keys = self._keys
        view = self._history.view if self._history is not None else None
        by_region = self.by_region
        by_line = self._by_line
        for ordinal, row in enumerate(self._rows()):
            if isinstance(row, RowError):
                self._reject(row)
                continue
            item, project, region, dest_project, _, _, _, _, line = row
            position = line if by_line else ordinal
            if position >= len(marks):  # grow by doubling: rows come in line order
                marks.extend(bytes(max(position + 1 - len(marks), len(marks))))
            key = keys(project, item, region)
            dest = hash(dest_project) & _DEST_MASK
            packed = index.get(key)
            if packed is None:
                counts = by_region.get(region) or self._counts_of(region)
                pair = _ABSENT if view is None else view(key)
                if pair is _ABSENT:
                    counts.to_send += 1
                    marks[position] = MARK_SEND
                else:
                    decision = decide(pair, self._retry_failed)
                    tally(counts, decision, +1)
                    marks[position] = MARKS[decision]
                index[key] = position << _POS_SHIFT | _COUNT_ONE | dest
            else:
                counts = by_region.get(region) or self._counts_of(region)
                index[key] = self._repeat(key, packed, dest, counts, conflict_keys)
        return conflict_keys

    def _repeat(
        self, key: bytes, packed: int, dest: int, counts: RegionCounts, conflict_keys: set[bytes]
    ) -> int:
        """Count a row that repeats a pair; returns the pair's new index entry."""
        seen = (packed >> _COUNT_SHIFT) & _COUNT_MAX
        if packed & _CONFLICT:
            counts.conflicts += 1
        elif packed & _DEST_MASK == dest:
            counts.duplicates += 1
        else:
            # A conflict: take back what was counted for this pair (its first row's
            # decision, its duplicates) and send none of its rows.
            conflict_keys.add(key)
            tally(counts, self._decide(key), -1)
            counts.duplicates -= seen - 1
            counts.conflicts += seen + 1
            self._marks[packed >> _POS_SHIFT] = MARK_SKIP
            packed |= _CONFLICT
        if seen < _COUNT_MAX:
            packed += _COUNT_ONE
        return packed

    def _decide(self, key: bytes) -> int:
        if self._history is None:
            return SEND
        return decide(self._history.view(key), self._retry_failed)

    def _counts_of(self, region: str) -> RegionCounts:
        counts = self.by_region.get(region)
        if counts is None:
            counts = self.by_region[region] = RegionCounts()
        return counts

    def _reject(self, row: RowError) -> None:
        region = row.destination_region
        if region is not None and is_region_name(region):
            self._counts_of(region).invalid += 1
        else:
            self.invalid_unplaced += 1
        if len(self.rejected) < self._max_rejected:
            self.rejected.append(row)
        else:
            self.rejected_dropped += 1

    def _collect_conflicts(self, conflict_keys: set[bytes]) -> list[Conflict]:
        """One more pass, only when there are conflicts: every row of each such pair."""
        found: dict[bytes, list[RowFields]] = {}
        keys = self._keys
        for row in self._rows():
            if not isinstance(row, RowError):
                key = keys(row[1], row[0], row[2])
                if key in conflict_keys:
                    found.setdefault(key, []).append(row)
        return [
            Conflict(
                key=(rows[0][1], rows[0][0], rows[0][2]),
                lines=tuple(r[8] for r in rows),
                destination_project_ids=tuple(r[3] for r in rows),
            )
            for rows in found.values()  # in the order of each pair's first row
        ]


def require_rows(plan: Plan, manifest: str) -> None:
    """Refuse a manifest without a single row (empty, or a header alone): "nothing to do"
    with exit 0 would hide a generator that failed or a wrong file name."""
    if plan.totals.rows == 0:
        raise ManifestError(
            manifest,
            None,
            None,
            "no rows: the manifest is empty or holds only a header, so there is nothing to "
            "do; pass --allow-empty if that is expected",
        )
