"""The fold behind ``report``: one streaming pass over ledger records into a tally.

What is counted how is told in :mod:`orchestrator.insight.report`.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from orchestrator.errors import ConfigError, LedgerError
from orchestrator.insight.report_model import (
    CBR_MANIFEST_HEADER,
    COPY_FAILED,
    MANIFEST_HEADER,
    UNKNOWN,
    RejectedRow,
    RunSelector,
)
from orchestrator.ledger.format import SCHEMA_VERSION, LedgerEvent, PairKeys
from orchestrator.models import FINAL_SUCCESS, ResultStatus
from orchestrator.service.records import CopyState, RecordReader, ledger_line_state

__all__ = ["Scanner", "scan"]

#: Read per line: plain strings (a str compared with a StrEnum member costs more).
_ATTEMPT: Final = LedgerEvent.ATTEMPT.value
_RESULT: Final = LedgerEvent.RESULT.value
_RUN_STARTED: Final = LedgerEvent.RUN_STARTED.value
_COPY_STATUS: Final = LedgerEvent.COPY_STATUS.value

_SUCCESS = frozenset(str(status) for status in FINAL_SUCCESS)
_REJECTED = str(ResultStatus.REJECTED)
_RUN_EVENTS = frozenset({_RUN_STARTED, _ATTEMPT, _RESULT, LedgerEvent.RUN_FINISHED.value})
_NO_REGION = "-"
_Label = tuple[str, str, str | None]  # (destination region, status, source region)


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
    keys: PairKeys  # the ledger's pair key; one numbering shared by every tally of a scan
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
        # A rejected row counts per manifest line, as the run counts it (see PairKeys.counted).
        key = self.keys.counted(record)
        if key is None:  # never for a result line
            return
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
        key = self.keys.of(record)
        if key is not None:
            self.set_status(key, record, UNKNOWN)
            self.track_row(key, UNKNOWN, record)

    def later_result(self, record: Mapping[str, Any]) -> None:
        """A result after the selected run: only a success takes a pair off the manifest."""
        key = self.keys.of(record)
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


class Scanner:
    """Feeds records to the tally of the selected runs."""

    def __init__(self, run: RunSelector, include: frozenset[str]) -> None:
        self.run = run
        self.include = include
        self.keys = PairKeys()
        self.tally = _Tally(include, self.keys)
        self.current: str | None = None  # run id of the lines being read
        self.copy: dict[bytes, str] = {}  # latest copy status of every pair
        self.copy_state: dict[bytes, CopyState] = {}  # and what it means
        self.reader = RecordReader()
        self.found = False

    def feed(self, record: Mapping[str, Any]) -> None:
        version = record.get("v", 1)
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"ledger schema v={version!r} is newer than this reader (v={SCHEMA_VERSION})"
            )
        event = record.get("event")
        if event == _COPY_STATUS:
            self._copy_status(record)
            return
        if event not in _RUN_EVENTS:
            return  # an event this reader does not know: nothing to count
        run_id = str(record.get("run_id"))
        if run_id != self.current:
            self._enter(run_id)
        tally = self.tally
        if tally.closed:
            if event == _RESULT:
                tally.later_result(record)
            return
        if not self._selected(run_id):
            return
        if event == _RESULT:
            tally.add_result(record)
        elif event == _ATTEMPT:
            tally.add_attempt(record)
        elif event == _RUN_STARTED:
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
            if previous is not None:  # a newer run: the older one is not "last"
                self.tally = _Tally(self.include, self.keys)
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
        key = self.keys.of(record)
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


def scan(
    records: Iterable[Mapping[str, Any]], run: RunSelector, include: frozenset[str]
) -> Scanner:
    scanner = Scanner(run, include)
    for record in records:
        scanner.feed(record)
    if run not in ("last", "all") and not scanner.found:
        raise ConfigError(f"run {run!r} is not in the ledger")
    return scanner


# -- the report ------------------------------------------------------------------------------
