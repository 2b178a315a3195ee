"""Summaries of a ledger: what a run (or every run) did, as a table, JSON or CSV; and a manifest
of the pairs worth sending again.

The input is any iterable of ledger records (schema v1), typically
``ledger.iter_records(path)``. It is read once, as a stream: memory grows with the number of
distinct *pairs* in the selected runs (about 150 bytes each: a 16-byte digest and a shared
label), with the durations (8 bytes per sent pair) and with the error codes, never with the
number of lines.

Selection (``run``):

* ``"last"``: the last run in the file. A run begins at its ``run_started`` line (or, in a
  ledger without one, at the first ``attempt``/``result`` line of a new ``run_id``).
  ``copy_status`` lines never start a run.
* ``"all"``: every run.
* any other string: the run with that id.

What is counted how:

* **Status counts** are *pairs* (project, checkpoint item, destination region), and the
  **latest** line per pair wins: with ``run="all"`` a pair that failed in one run and was
  replicated in the next counts once, as replicated. A pair with an ``attempt`` and no later
  ``result`` is ``unknown``: the request may have been applied (resume reconciles it).
  A rejected manifest row without the three ids counts once per (manifest, line).
* **Errors, attempts, retries and durations** describe what *happened*: every ``result`` line
  of the selected runs counts, including failures that a later run repaired.
  ``retries`` is the sum of ``attempts - 1``; durations are those of sent pairs only
  (``attempts >= 1``); the median is the usual one, p95 is the nearest-rank value.
* **Copy status** is the latest ``copy_status`` line of each selected pair, wherever it is in
  the ledger (the copy finishes long after the run that asked for it): counted by the
  service's own word (``copy_status``) and by what it means (``copy_states``: running,
  success, failed, skipped; see :mod:`orchestrator.service.records`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from orchestrator.atomic_file import replace_file
from orchestrator.errors import ConfigError, LedgerError
from orchestrator.models import FINAL_SUCCESS, ResultStatus
from orchestrator.safe_text import csv_row, for_terminal
from orchestrator.service.records import CopyState, RecordReader, ledger_line_state

__all__ = [
    "MANIFEST_HEADER",
    "STATUS_ORDER",
    "ErrorSummary",
    "RejectedRow",
    "Report",
    "RunInfo",
    "build_report",
    "check_include",
    "render_csv",
    "render_json",
    "render_table",
    "write_failed_manifest",
]

UNKNOWN = "unknown"
#: Every status a report shows, in display order: the ledger's result statuses, then ``unknown``.
STATUS_ORDER: tuple[str, ...] = (*(str(status) for status in ResultStatus), UNKNOWN)
COPY_FAILED = "copy_failed"
MANIFEST_HEADER = (
    "checkpoint_item_id",
    "destination_region",
    "destination_project_id",
    "project_id",
    "source_region",
)
#: The failed-pairs manifest of a CBR ledger (its lines say backup_id): a CBR manifest.
CBR_MANIFEST_HEADER = (
    "backup_id",
    "destination_region",
    "destination_project_id",
    "destination_vault_id",
    "project_id",
    "source_region",
)
_SUCCESS = frozenset(str(status) for status in FINAL_SUCCESS)
_REJECTED = str(ResultStatus.REJECTED)
_INCLUDABLE = frozenset(STATUS_ORDER) - _SUCCESS | {COPY_FAILED}
_RUN_EVENTS = frozenset({"run_started", "attempt", "result", "run_finished"})
_NO_REGION = "-"
_TABLE_RUNS = 20  # the table lists at most this many runs (the JSON lists all)
_TABLE_REJECTED = 20  # ... and this many rejected rows

RunSelector = Literal["last", "all"] | str
_Label = tuple[str, str, str | None]  # (destination region, status, source region)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as its ``run_started`` and ``run_finished`` lines describe it.

    ``finished_at`` is None when the run has no ``run_finished`` line: it crashed (or is still
    running)."""

    run_id: str
    started_at: str | None = None
    finished_at: str | None = None
    manifest: str | None = None
    source: str | None = None
    interrupted: bool | None = None
    reason: str | None = None
    exit_code: int | None = None
    requests: int | None = None
    retries: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    """How often an error code ended a pair, with the first example seen."""

    error_code: str
    count: int
    example_msg: str | None
    example_http_status: int | None
    example_checkpoint_item_id: str | None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A manifest row that was not sent, and why (``manifest:line: field: reason``)."""

    manifest: str | None
    line: int | None
    field: str | None
    reason: str | None
    checkpoint_item_id: str | None
    destination_region: str | None

    def __str__(self) -> str:
        what = f"field {self.field!r}: " if self.field else ""
        return f"{self.manifest}:{self.line}: {what}{self.reason}"


@dataclass(frozen=True, slots=True)
class Report:
    """A ledger summary. Mappings are ordered for display (regions sorted, statuses in
    :data:`STATUS_ORDER`)."""

    scope: str
    runs: tuple[RunInfo, ...]
    counts: Mapping[tuple[str, str], int]  # (destination_region, status) -> pairs, nonzero only
    totals: Mapping[str, int]  # status -> pairs, every status of STATUS_ORDER (and extras)
    pairs: int
    errors: tuple[ErrorSummary, ...]  # most frequent first
    retries: int
    attempts: Mapping[int, int]  # attempts per sent pair -> pairs
    durations_count: int
    duration_median_s: float | None
    duration_p95_s: float | None
    copy_status: Mapping[str, int]
    copy_states: Mapping[str, int] = field(default_factory=dict)
    """Latest copy state per pair (running, success, failed, skipped), nonzero only."""
    #: Every rejected manifest row of the selected runs, once per (manifest, line).
    rejected: tuple[RejectedRow, ...] = ()

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({region for region, _ in self.counts}))

    @property
    def statuses(self) -> tuple[str, ...]:
        return tuple(self.totals)


# -- reading ---------------------------------------------------------------------------------


def _pair_key(record: Mapping[str, Any]) -> bytes | None:
    """A 16-byte digest of (project, item, destination region): a fifth of the memory of the
    three strings, and collisions are out of reach at 128 bits."""
    project = record.get("project_id")
    item = record.get("checkpoint_item_id") or record.get("backup_id")  # CSBS or CBR
    region = record.get("destination_region")
    if project is None or item is None or region is None:
        return None
    raw = f"{project}\x1f{item}\x1f{region}".encode()
    return hashlib.blake2b(raw, digest_size=16).digest()


def _row_key(record: Mapping[str, Any]) -> bytes:
    """The key of a rejected row: the manifest line it came from, and what it named. The
    manifest by its file name only: a resume names it as its run recorded it (absolute),
    the first run as it was typed (often relative), and one line must count once."""
    manifest = os.path.basename(str(record.get("manifest") or ""))
    what = (
        record.get("checkpoint_item_id") or record.get("backup_id"),
        record.get("destination_region"),
    )
    raw = f"\x00rejected\x1f{manifest}\x1f{record.get('manifest_line')}\x1f{what}".encode()
    return hashlib.blake2b(raw, digest_size=16).digest()


def _manifest_row(record: Mapping[str, Any]) -> tuple[str, ...] | None:
    cbr = "backup_id" in record
    header = CBR_MANIFEST_HEADER if cbr else MANIFEST_HEADER
    values = tuple(record.get(name) for name in header)
    if any(value is None or value == "" for value in values[: 5 if cbr else 4]):
        return None  # a row the manifest reader would reject; cannot be sent again as is
    return tuple("" if value is None else str(value) for value in values)


def _rejected_row(record: Mapping[str, Any]) -> RejectedRow:
    def text(name: str) -> str | None:
        value = record.get(name)
        return None if value is None else str(value)

    return RejectedRow(
        manifest=text("manifest"),
        line=_int(record.get("manifest_line")),
        field=text("field"),
        reason=text("error_msg"),
        checkpoint_item_id=text("checkpoint_item_id"),
        destination_region=text("destination_region"),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


@dataclass(slots=True)
class _ErrorTally:
    count: int
    msg: str | None
    http_status: int | None
    item: str | None


@dataclass(slots=True)
class _Tally:
    """The aggregates of one selection of runs."""

    include: frozenset[str]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # pair -> (destination region, status, source region): one shared tuple per distinct label
    pairs: dict[bytes, _Label] = field(default_factory=dict)
    counts: Counter[_Label] = field(default_factory=Counter)
    labels: dict[_Label, _Label] = field(default_factory=dict)
    errors: dict[str, _ErrorTally] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    durations: array[float] = field(default_factory=lambda: array("d"))
    rows: dict[bytes, tuple[str, ...]] = field(default_factory=dict)  # the manifest to write
    rejected: dict[bytes, RejectedRow] = field(default_factory=dict)
    closed: bool = False  # the selected run is over; later lines only update ``rows``

    def run(self, run_id: str) -> dict[str, Any]:
        return self.runs.setdefault(run_id, {"run_id": run_id})

    def set_status(self, key: bytes, record: Mapping[str, Any], status: str) -> None:
        old = self.pairs.get(key)
        source = record.get("source_region") or (old[2] if old is not None else None)
        region = record.get("destination_region") or _NO_REGION
        new = (str(region), status, None if source is None else str(source))
        label = self.labels.setdefault(new, new)
        if old is not None:
            self.counts[old] -= 1
        self.pairs[key] = label
        self.counts[label] += 1

    def track_row(self, key: bytes, state: str, record: Mapping[str, Any]) -> None:
        """Keep the manifest row of pairs whose latest state is included; drop the others."""
        if not self.include:
            return
        row = _manifest_row(record) if state in self.include else None
        if row is None:
            self.rows.pop(key, None)
        else:
            self.rows.pop(key, None)  # re-insert: the manifest lists pairs by latest failure
            self.rows[key] = row

    def add_result(self, record: Mapping[str, Any]) -> None:
        status = str(record.get("status"))
        # A rejected row counts per manifest line, as the run counts it: two rows of one pair
        # (a conflict) are two rejected rows.
        key = _row_key(record) if status == _REJECTED else _pair_key(record)
        if key is None:
            key = _row_key(record)
        if status == _REJECTED:
            self.rejected[key] = _rejected_row(record)
        self.set_status(key, record, status)
        self.track_row(key, status, record)
        attempts = _int(record.get("attempts")) or 0
        if attempts >= 1:
            self.attempts[attempts] += 1
            duration = _number(record.get("duration_s"))
            if duration is not None:
                self.durations.append(duration)
        if status not in _SUCCESS:
            self.add_error(record, status)

    def add_error(self, record: Mapping[str, Any], status: str) -> None:
        http_status = _int(record.get("http_status"))
        code = record.get("error_code") or (f"HTTP {http_status}" if http_status else status)
        tally = self.errors.get(str(code))
        if tally is None:
            msg = record.get("error_msg")
            item = record.get("checkpoint_item_id") or record.get("backup_id")
            self.errors[str(code)] = _ErrorTally(
                1,
                None if msg is None else str(msg),
                http_status,
                None if item is None else str(item),
            )
        else:
            tally.count += 1

    def add_attempt(self, record: Mapping[str, Any]) -> None:
        key = _pair_key(record)
        if key is not None:
            self.set_status(key, record, UNKNOWN)
            self.track_row(key, UNKNOWN, record)

    def later_result(self, record: Mapping[str, Any]) -> None:
        """A result after the selected run: only a success takes a pair off the manifest."""
        key = _pair_key(record)
        if key is not None and key in self.rows and record.get("status") in _SUCCESS:
            del self.rows[key]

    def copy_status(self, key: bytes, record: Mapping[str, Any], state: CopyState | None) -> None:
        label = self.pairs.get(key)
        if label is None or not self.include:
            return
        # A skipped copy did not happen either: the manifest of copies to send again takes it.
        if state not in (CopyState.FAILED, CopyState.SKIPPED):
            self.track_row(key, "copy", record)
        elif record.get("source_region") is None:
            # The source region picks the endpoint the pair is sent to: keep it in the row.
            self.track_row(key, COPY_FAILED, {**record, "source_region": label[2]})
        else:
            self.track_row(key, COPY_FAILED, record)


class _Scanner:
    """Feeds records to the tally of the selected runs."""

    def __init__(self, run: RunSelector, include: frozenset[str]) -> None:
        self.run = run
        self.include = include
        self.tally = _Tally(include)
        self.current: str | None = None  # run id of the lines being read
        self.copy: dict[bytes, str] = {}  # latest copy status of every pair
        self.copy_state: dict[bytes, CopyState] = {}  # and what it means
        self.reader = RecordReader()
        self.found = False

    def feed(self, record: Mapping[str, Any]) -> None:
        version = record.get("v", 1)
        if version != 1:
            raise LedgerError(f"ledger schema v={version!r} is newer than this reader (v=1)")
        event = record.get("event")
        if event == "copy_status":
            self._copy_status(record)
            return
        if event not in _RUN_EVENTS:
            return  # an event this reader does not know: nothing to count
        run_id = str(record.get("run_id"))
        if run_id != self.current:
            self._enter(run_id)
        tally = self.tally
        if tally.closed:
            if event == "result":
                tally.later_result(record)
            return
        if not self._selected(run_id):
            return
        if event == "result":
            tally.add_result(record)
        elif event == "attempt":
            tally.add_attempt(record)
        elif event == "run_started":
            tally.run(run_id).update(
                started_at=record.get("ts"),
                manifest=record.get("manifest"),
                source=record.get("source"),
            )
        else:
            self._run_finished(tally.run(run_id), record)

    def _selected(self, run_id: str) -> bool:
        return self.run in ("last", "all") or run_id == self.run

    def _enter(self, run_id: str) -> None:
        """The lines of another run begin (runs never interleave: the ledger is locked)."""
        previous, self.current = self.current, run_id
        if self.run == "last":
            if previous is not None:
                self.tally = _Tally(self.include)  # a newer run: the older one is not "last"
        elif self.run != "all":
            if run_id == self.run:
                self.found = True
            elif self.found:
                self.tally.closed = True
        if self._selected(run_id):
            self.tally.run(run_id)

    @staticmethod
    def _run_finished(run: dict[str, Any], record: Mapping[str, Any]) -> None:
        run.update(
            finished_at=record.get("ts"),
            interrupted=record.get("interrupted"),
            reason=record.get("reason"),
            exit_code=_int(record.get("exit_code")),
            requests=_int(record.get("requests")),
            retries=_int(record.get("retries")),
            duration_s=_number(record.get("duration_s")),
        )

    def _copy_status(self, record: Mapping[str, Any]) -> None:
        key = _pair_key(record)
        status = record.get("copy_status")
        if key is None or status is None:
            return
        self.copy[key] = str(status)
        state = ledger_line_state(record, self.reader)
        if state is not None:
            self.copy_state[key] = state
        else:
            self.copy_state.pop(key, None)
        self.tally.copy_status(key, record, state)


def _scan(
    records: Iterable[Mapping[str, Any]], run: RunSelector, include: frozenset[str]
) -> _Scanner:
    scanner = _Scanner(run, include)
    for record in records:
        scanner.feed(record)
    if run not in ("last", "all") and not scanner.found:
        raise ConfigError(f"run {run!r} is not in the ledger")
    return scanner


# -- the report ------------------------------------------------------------------------------


def build_report(
    records: Iterable[Mapping[str, Any]], *, run: RunSelector = "last", top: int = 10
) -> Report:
    """Summarise the selected runs of a ledger (see the module docstring for what counts how).

    With ``run="all"`` the latest result of each pair wins for the status counts.
    Raises :class:`ConfigError` when a run id is not in the ledger, :class:`LedgerError` for a
    ledger of a newer schema.
    """
    scanner = _scan(records, run, frozenset())
    tally = scanner.tally
    by_label: Counter[tuple[str, str]] = Counter()
    for (region, status, _), n in tally.counts.items():
        by_label[region, status] += n
    counts = {label: n for label, n in sorted(by_label.items(), key=_label_order) if n}
    totals = dict.fromkeys(STATUS_ORDER, 0)
    for (_, status), n in counts.items():
        totals[status] = totals.get(status, 0) + n
    errors = sorted(tally.errors.items(), key=lambda item: (-item[1].count, item[0]))[:top]
    copy_counts: Counter[str] = Counter(
        scanner.copy[key] for key in tally.pairs if key in scanner.copy
    )
    state_counts: Counter[str] = Counter(
        str(scanner.copy_state[key]) for key in tally.pairs if key in scanner.copy_state
    )
    durations = sorted(tally.durations)
    return Report(
        scope=run,
        runs=tuple(RunInfo(**fields) for fields in tally.runs.values()),
        counts=counts,
        totals=totals,
        pairs=sum(counts.values()),
        errors=tuple(
            ErrorSummary(code, e.count, e.msg, e.http_status, e.item) for code, e in errors
        ),
        retries=sum((n - 1) * pairs for n, pairs in tally.attempts.items()),
        attempts=dict(sorted(tally.attempts.items())),
        durations_count=len(durations),
        duration_median_s=statistics.median(durations) if durations else None,
        duration_p95_s=_nearest_rank(durations, 0.95),
        copy_status=dict(sorted(copy_counts.items())),
        copy_states={s.value: state_counts[s.value] for s in CopyState if state_counts[s.value]},
        rejected=tuple(tally.rejected.values()),
    )


def _status_rank(status: str) -> tuple[int, str]:
    try:
        return STATUS_ORDER.index(status), status
    except ValueError:
        return len(STATUS_ORDER), status


def _label_order(item: tuple[tuple[str, str], int]) -> tuple[str, tuple[int, str]]:
    (region, status), _ = item
    return region, _status_rank(status)


def _nearest_rank(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


# -- rendering -------------------------------------------------------------------------------


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _grid(headers: tuple[str, ...], rows: list[tuple[str, ...]], numeric: set[int]) -> list[str]:
    # Every cell may come from the ledger, hence from the service: no escape codes through.
    rows = [tuple(for_terminal(cell, 200) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def render_table(report: Report) -> str:
    """Plain aligned text for a terminal or an e-mail; stable, no colours."""
    scope = {"last": "last run", "all": "all runs"}.get(
        report.scope, f"run {for_terminal(report.scope, 100)}"
    )
    out = [f"Ledger report: {scope}, {len(report.runs)} run(s), {report.pairs} pair(s)"]
    if not report.runs:
        out.append("  (no runs in this ledger)")
        return "\n".join(out) + "\n"
    out += _runs_table(report)
    out += _pairs_table(report)
    out += _errors_table(report)
    out += _rejected_lines(report)
    out += _summary_lines(report)
    return "\n".join(out) + "\n"


def _runs_table(report: Report) -> list[str]:
    out = ["", "Runs"]
    runs = report.runs[-_TABLE_RUNS:]
    if len(report.runs) > len(runs):
        out.append(f"  ... {len(report.runs) - len(runs)} earlier run(s) not shown")
    out += _grid(
        ("run_id", "started_at", "finished_at", "exit", "interrupted", "requests", "retries"),
        [
            (
                r.run_id,
                _text(r.started_at),
                _text(r.finished_at),
                _text(r.exit_code),
                _flag(r.interrupted),
                _text(r.requests),
                _text(r.retries),
            )
            for r in runs
        ],
        numeric={3, 5, 6},
    )
    return out


def _pairs_table(report: Report) -> list[str]:
    statuses = report.statuses
    rows = [
        (
            region,
            *(str(report.counts.get((region, s), 0)) for s in statuses),
            str(sum(report.counts.get((region, s), 0) for s in statuses)),
        )
        for region in report.regions
    ]
    rows.append(("total", *(str(report.totals[s]) for s in statuses), str(report.pairs)))
    header = ("destination_region", *statuses, "total")
    title = "Pairs by destination region and status (latest result per pair)"
    return ["", title, *_grid(header, rows, set(range(1, len(statuses) + 2)))]


def _errors_table(report: Report) -> list[str]:
    if not report.errors:
        return []
    rows: list[tuple[str, ...]] = [
        (
            e.error_code,
            str(e.count),
            _text(e.example_http_status),
            _text(e.example_checkpoint_item_id),
            _shorten(e.example_msg),
        )
        for e in report.errors
    ]
    header = ("error_code", "count", "http", "checkpoint_item_id", "example")
    return ["", "Top errors", *_grid(header, rows, numeric={1, 2})]


def _rejected_lines(report: Report) -> list[str]:
    total = len(report.rejected)
    if not total:
        return []
    shown = report.rejected[:_TABLE_REJECTED]
    which = "" if total == len(shown) else f", the first {len(shown)} (--format json lists all)"
    return ["", f"Rejected manifest rows: {total}{which}", *(f"  {row}" for row in shown)]


def _summary_lines(report: Report) -> list[str]:
    attempts = ", ".join(f"{n}: {pairs}" for n, pairs in report.attempts.items()) or "-"
    out = [
        "",
        f"Attempts per sent pair: {attempts} (retries: {report.retries})",
        f"Duration of sent pairs: n={report.durations_count}, "
        f"median {_fmt_seconds(report.duration_median_s)}, "
        f"p95 {_fmt_seconds(report.duration_p95_s)}",
    ]
    if report.copy_status:
        copies = ", ".join(f"{status}: {n}" for status, n in report.copy_status.items())
        out.append(f"Copy status (latest per pair): {copies}")
    if report.copy_states:
        states = ", ".join(f"{state}: {n}" for state, n in report.copy_states.items())
        out.append(f"Copies by state: {states}")
    return out


def _shorten(text: str | None, width: int = 60) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def report_dict(report: Report) -> dict[str, Any]:
    """The JSON document of :func:`render_json`, as Python objects.

    Keys (stable; new keys may be added, none removed or renamed)::

        scope        "last" | "all" | a run id
        runs         [{run_id, started_at, finished_at, manifest, source, interrupted, reason,
                       exit_code, requests, retries, duration_s}]
        pairs        number of pairs counted
        totals       {status: pairs} for every status in STATUS_ORDER
        by_region    {region: {status: pairs for every status, "total": pairs}}
        errors       [{error_code, count, example: {error_msg, http_status, checkpoint_item_id}}]
        retries      sum of attempts - 1 over sent pairs
        attempts     {"1": pairs, "2": pairs, ...}
        durations    {count, median_s, p95_s}
        copy_status  {copy status (the service's word): pairs}
        copy_states  {running|success|failed|skipped: pairs}
        rejected     [{manifest, line, field, reason, checkpoint_item_id, destination_region}]
                     every rejected manifest row, once per (manifest, line)
    """
    statuses = report.statuses
    by_region: dict[str, dict[str, int]] = {}
    for region in report.regions:
        row = {status: report.counts.get((region, status), 0) for status in statuses}
        row["total"] = sum(row.values())
        by_region[region] = row
    return {
        "scope": report.scope,
        "runs": [
            {name: getattr(run, name) for name in RunInfo.__dataclass_fields__}
            for run in report.runs
        ],
        "pairs": report.pairs,
        "totals": dict(report.totals),
        "by_region": by_region,
        "errors": [
            {
                "error_code": e.error_code,
                "count": e.count,
                "example": {
                    "error_msg": e.example_msg,
                    "http_status": e.example_http_status,
                    "checkpoint_item_id": e.example_checkpoint_item_id,
                },
            }
            for e in report.errors
        ],
        "retries": report.retries,
        "attempts": {str(n): pairs for n, pairs in report.attempts.items()},
        "durations": {
            "count": report.durations_count,
            "median_s": report.duration_median_s,
            "p95_s": report.duration_p95_s,
        },
        "copy_status": dict(report.copy_status),
        "copy_states": dict(report.copy_states),
        "rejected": [
            {name: getattr(row, name) for name in RejectedRow.__dataclass_fields__}
            for row in report.rejected
        ],
    }


def render_json(report: Report) -> str:
    """The report as one indented JSON document; keys are listed in :func:`report_dict`."""
    return orjson.dumps(report_dict(report), option=orjson.OPT_INDENT_2).decode() + "\n"


def render_csv(report: Report) -> str:
    """``destination_region,status,count``: one row per region x status, zeros included, so a
    spreadsheet pivot always finds every column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("destination_region", "status", "count"))
    for region in report.regions:
        for status in report.statuses:
            writer.writerow(csv_row((region, status, report.counts.get((region, status), 0))))
    return buffer.getvalue()


# -- the manifest of pairs to send again -----------------------------------------------------


def check_include(include: Iterable[str]) -> frozenset[str]:
    """The statuses ``--include`` names, or :class:`ConfigError` naming the unknown ones."""
    wanted = frozenset(include)
    unknown = wanted - _INCLUDABLE
    if unknown:
        raise ConfigError(
            f"--include: cannot include {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(sorted(_INCLUDABLE))}"
        )
    return wanted


def write_failed_manifest(
    records: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    run: RunSelector = "last",
    include: Iterable[str] = ("failed", "gave_up"),
) -> int:
    """Write the pairs of the selected runs whose latest state is in ``include`` as a CSV
    manifest (:data:`MANIFEST_HEADER`) that ``run --manifest`` accepts; return how many.

    ``include`` takes result statuses (``failed``, ``gave_up``, ``rejected``, ``unknown``) and
    ``copy_failed`` (the replicate call succeeded but the latest copy state is ``failed`` or
    ``skipped``: the service's ``fail`` or ``skip``).
    A pair whose latest result anywhere in the ledger is a success is left out, and so are
    rejected rows that lack an id. The file is replaced atomically.
    """
    wanted = check_include(include)
    rows = list(_scan(records, run, wanted).tally.rows.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    cbr = bool(rows) and len(rows[0]) == len(CBR_MANIFEST_HEADER)
    writer.writerow(CBR_MANIFEST_HEADER if cbr else MANIFEST_HEADER)
    # Ids and names come from the ledger, so from the service or a manifest: a spreadsheet
    # must not run them as formulas. (A neutralised id is no UUID: `run` then rejects it.)
    writer.writerows(csv_row(row) for row in rows)
    replace_file(path, buffer.getvalue().encode())  # 0600, like every file the tool writes
    return len(rows)
