"""What coverage is fed: an item of the listing as it sees it (:func:`observe`), and the
tool's own latest word on each pair from its ledgers (:func:`ledger_facts`).

Both vocabularies of the service's copy words (a record's ``status``, an item's
``extend_info.copy_status``) and the ledger's ``copy_status`` lines are read by
:mod:`orchestrator.service.records`, as ``track``, ``report`` and ``discover`` read them: a copy
waiting or copying is running (live), and so is a word nobody knows (a copy we cannot read
must not be reported missing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from orchestrator.ledger.format import LedgerEvent
from orchestrator.service.records import CopyState, RecordReader, ledger_line_state

__all__ = ["CopySeen", "LedgerFact", "Observed", "day", "ledger_facts", "observe", "parse_time"]


def parse_time(value: object) -> float | None:
    """The API's times (UTC without a zone, ``2017-04-18T01:21:52.701973``) and the ledger's
    (ISO with an offset) as Unix seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def day(moment: float) -> str:
    """A moment's UTC date, as reasons name it."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class LedgerFact:
    """The tool's latest word on one pair (item, region), when it was bad news."""

    failed: bool
    at: float
    reason: str


_FAILED_RESULTS: Final = frozenset({"failed", "gave_up"})


def _result_reason(record: Mapping[str, Any], at: float) -> str:
    status = str(record.get("status"))
    what = record.get("http_status") or record.get("error_code") or "error"
    attempts = record.get("attempts")
    times = f" x{attempts}" if isinstance(attempts, int) and attempts > 1 else ""
    words = "gave up" if status == "gave_up" else "failed"
    code = record.get("error_code")
    detail = f" {code}" if code and str(code) != str(what) else ""
    return f"{words}: {what}{times}{detail} on {day(at)}"


def ledger_facts(
    records: Iterable[Mapping[str, Any]], reader: RecordReader | None = None
) -> dict[tuple[str, str], LedgerFact]:
    """(checkpoint item id, destination region) -> the latest result or tracked copy status of
    that pair in ``records`` (any number of ledgers, chained), as failed or not, with a
    reason such as ``gave up: 503 x8 on 2026-12-02``."""
    reader = reader or RecordReader()
    facts: dict[tuple[str, str], LedgerFact] = {}
    for record in records:
        event = record.get("event")
        if event not in ("result", "copy_status"):
            continue
        # CBR ledgers name the backup where CSBS ledgers name the checkpoint item.
        item = record.get("checkpoint_item_id") or record.get("backup_id")
        region = record.get("destination_region")
        if not isinstance(item, str) or not isinstance(region, str):
            continue
        at = parse_time(record.get("finished_at")) or parse_time(record.get("ts")) or 0.0
        key = (item.lower(), region)
        previous = facts.get(key)
        if previous is not None and previous.at > at:
            continue
        if event == LedgerEvent.RESULT:
            status = str(record.get("status"))
            if status == "rejected":
                continue
            failed = status in _FAILED_RESULTS
            reason = _result_reason(record, at) if failed else f"{status} on {day(at)}"
        else:
            state = ledger_line_state(record, reader)
            failed = state is CopyState.FAILED
            reason = f"copy failed (track) on {day(at)}" if failed else f"copy {state or 'none'}"
        facts[key] = LedgerFact(failed, at, reason)
    return facts


# --------------------------------------------------------------------------- one item


@dataclass(frozen=True, slots=True)
class CopySeen:
    """One replication of an item as the service shows it. ``region`` None: the item only
    says ``extend_info.copy_status`` without naming the region. A record or status that says
    no copy (``na``, none) is not one."""

    region: str | None
    state: CopyState
    at: float | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Observed:
    """What coverage keeps of one listed item."""

    item_id: str
    project_id: str
    source_region: str
    resource_id: str
    resource_name: str
    available: bool
    created_at: float | None
    targets: tuple[str, ...]
    copies: tuple[CopySeen, ...]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _record_reason(record: Mapping[str, Any]) -> str:
    extra = record.get("extra_info")
    extra = extra if isinstance(extra, Mapping) else {}
    code = _text(extra.get("fail_code")) or _text(record.get("fail_code"))
    text = _text(extra.get("fail_reason")) or _text(record.get("fail_reason"))
    return " ".join(part for part in (code, text) if part)


def _copies(item: Mapping[str, Any], reader: RecordReader) -> tuple[CopySeen, ...]:
    records = item.get("replication_records")
    if isinstance(records, list):
        return tuple(
            CopySeen(
                _text(r.get("destination_region")) or None,
                state,
                parse_time(r.get("created_at")),
                _record_reason(r),
            )
            for r in records
            if isinstance(r, Mapping) and (state := reader.state(r.get("status"))) is not None
        )
    extend = item.get("extend_info")
    if not isinstance(extend, Mapping):
        return ()
    state = reader.state(extend.get("copy_status"))
    if state is None:
        return ()
    fail = extend.get("fail_code")
    code = _text(fail.get("Code")) if isinstance(fail, Mapping) else ""
    reason = " ".join(p for p in (code, _text(extend.get("fail_reason"))) if p)
    return (CopySeen(None, state, parse_time(item.get("updated_at")), reason),)


def observe(
    item: Mapping[str, Any],
    *,
    project_id: str,
    source_region: str,
    targets: Iterable[str],
    reader: RecordReader | None = None,
) -> Observed | None:
    """An item of the listing as coverage sees it; None for what is not a protected
    resource's backup (no resource id, or a replica made in this region from another: a
    CSBS item's ``extend_info.copy_from``, a CBR backup's ``image_type`` ``replication``).
    ``reader``: the command's (it says once of each word it does not know)."""
    extend = item.get("extend_info")
    extend = extend if isinstance(extend, Mapping) else {}
    resource = _text(item.get("resource_id"))
    item_id = _text(item.get("id"))
    replica = _text(extend.get("copy_from")) or item.get("image_type") == "replication"
    if not resource or not item_id or replica:
        return None
    return Observed(
        item_id=item_id.lower(),
        project_id=project_id,
        source_region=source_region,
        resource_id=resource,
        resource_name=_text(item.get("resource_name")) or _text(extend.get("resource_name")),
        available=item.get("status") == "available",
        created_at=parse_time(item.get("created_at")),
        targets=tuple(t for t in targets if t != source_region),
        copies=_copies(item, reader or RecordReader()),
    )
