"""Compact ``attempt`` and ``result`` lines: what they leave out, and how a reader fills it back.

A finished pair used to cost about 960 bytes of ledger (its ``attempt`` and ``result`` lines
repeat the run id, four ISO timestamps, the pair's destination project and source region,
and nulls). A run now writes both lines *compact* once its ``run_started`` line is written:

* no ``run_id``: it is the id of the ``run_started`` line before (runs never interleave in a
  ledger: it is locked by one writer). Its absence is what marks a line as compact;
* no ``ts``: ``t`` instead, the seconds (to the microsecond) since that ``run_started``'s
  ``ts``; a result's ``finished_at`` is its ``ts`` and its ``started_at`` is ``ts`` minus
  ``duration_s``, so neither is written;
* ``source_region``, ``destination_project_id`` and ``destination_vault_id`` only when they
  differ from the value the run last wrote for the same (``project_id``,
  ``destination_region``);
* defaults left out: ``attempt``/``attempts`` 1, ``replication_record_id``, ``error_code``,
  ``error_msg`` and ``manifest_line`` null, ``http_status`` 200 on a ``replicated`` line
  (null on any other).

What a fold decides on stays in every line, with its name: ``v``, ``event``, the pair
(``project_id``, ``checkpoint_item_id`` or ``backup_id``, ``destination_region``),
``status``, ``replication_record_id`` and ``outcome_unknown``. So the history, its snapshot
(which may start in the middle of a run) and an older csbs-orchestrator fold a compact
ledger exactly as a verbose one; :func:`expand` gives every other reader the verbose line,
value for value (``ledger.file.LedgerReader`` applies it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from orchestrator.errors import LedgerError
from orchestrator.ledger.format import PAIR_EVENTS, LedgerEvent

__all__ = ["Compactor", "Expander", "micros"]

#: Read once per compact line: a plain string (not an enum attribute lookup).
_ATTEMPT: Final = LedgerEvent.ATTEMPT.value

#: Fields of a pair's context: written when they change for a (project, destination region).
_CONTEXT: Final = ("source_region", "destination_project_id", "destination_vault_id")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
_MISSING: Final = object()


def micros(epoch: float) -> int:
    """Unix time as whole microseconds, rounded as ``recorder.timestamp`` rounds it."""
    whole = int(epoch // 1)
    fraction = epoch - whole
    return whole * 1_000_000 + round(fraction * 1e6)


def _parse_micros(text: object) -> int | None:
    if type(text) is not str:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


class _Iso:
    """Whole microseconds as ``recorder.timestamp`` writes them, the date and time formatted
    once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, us: int) -> str:
        second, fraction = divmod(us, 1_000_000)
        if second != self._second:
            moment = datetime.fromtimestamp(second, UTC).replace(tzinfo=None)
            self._second, self._text = second, moment.isoformat(timespec="seconds")
        return f"{self._text}.{fraction:06d}+00:00"


class Compactor:
    """The writer's side: one run's compact lines (one per recorder, after its
    ``run_started`` at ``base_us``)."""

    __slots__ = ("_context", "base_us")

    def __init__(self, base_us: int) -> None:
        self.base_us = base_us
        self._context: dict[tuple[Any, Any, str], Any] = {}

    def attempt(self, line: dict[str, Any], us: int) -> dict[str, Any]:
        """The compact form of a verbose ``attempt`` line written at ``us``."""
        out: dict[str, Any] = {"v": line["v"], "event": line["event"], "t": self._t(us)}
        for key, value in line.items():
            if key not in _ATTEMPT_DROPS:
                out[key] = value
        self._context_of(out)
        if out.get("attempt") == 1:
            del out["attempt"]
        return out

    def result(self, line: dict[str, Any], us: int) -> dict[str, Any]:
        """The compact form of a verbose ``result`` line finished at ``us``."""
        out: dict[str, Any] = {"v": line["v"], "event": line["event"], "t": self._t(us)}
        for key, value in line.items():
            if key in _RESULT_DROPS:
                continue
            if value is None and key in _NULL_DEFAULT and key != "http_status":
                continue
            out[key] = value
        self._context_of(out)
        if out.get("attempts") == 1:
            del out["attempts"]
        if "http_status" in out and out["http_status"] == _http_default(out.get("status")):
            del out["http_status"]
        return out

    def _context_of(self, out: dict[str, Any]) -> None:
        """Leave out each context field that repeats the run's last value for the pair's
        (project, destination region); remember the others."""
        project, region = out.get("project_id"), out.get("destination_region")
        context = self._context
        for field in _CONTEXT:
            value = out.get(field, _MISSING)
            if value is _MISSING:
                continue
            key = (project, region, field)
            if key in context and context[key] == value:
                del out[field]
            else:
                context[key] = value

    def _t(self, us: int) -> float:
        return (us - self.base_us) / 1e6


#: Fields of a verbose line a compact one does not copy (v and event come first, then t). Sets:
#: a tuple is searched key by key, for each of a result line's twenty fields.
_ATTEMPT_DROPS: Final = frozenset({"v", "event", "ts", "run_id"})
_RESULT_DROPS: Final = _ATTEMPT_DROPS | {"started_at", "finished_at"}

#: Result fields a compact line leaves out when null (``http_status``: see :class:`Expander`).
_NULL_DEFAULT: Final = frozenset(
    {"replication_record_id", "http_status", "error_code", "error_msg", "manifest_line"}
)


class Expander:
    """The reader's side: follows the runs of one ledger in file order and gives compact
    lines back their verbose form (any other line passes as it is)."""

    __slots__ = ("_base_us", "_context", "_iso", "_run_id", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._run_id: Any = None
        self._base_us: int | None = None
        # (project, destination region) -> [source region, destination project, vault]
        self._context: dict[tuple[Any, Any], list[Any]] = {}
        self._iso = _Iso()

    def __call__(self, records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        pair_events = PAIR_EVENTS
        for record in records:
            if "run_id" in record:
                if record.get("event") == LedgerEvent.RUN_STARTED:
                    self._run_id = record["run_id"]
                    self._base_us = _parse_micros(record.get("ts"))
                    self._context = {}
                yield record
            elif "t" in record and record.get("event") in pair_events:
                yield self.expand(record)
            else:
                yield record

    def expand(self, record: dict[str, Any]) -> dict[str, Any]:
        """The verbose form of one compact ``attempt`` or ``result`` line, in place (its
        fields in another order than a verbose line's; the same fields and values)."""
        t = record.pop("t")
        base = self._base_us
        if base is None or type(t) not in (int, float):
            raise LedgerError(
                f"{self.name}: a compact {record.get('event')} line without a run_started "
                "line before it (or with a malformed t): was the ledger cut at its start?"
            )
        us = base + round(t * 1e6)
        record["ts"] = ts = self._iso(us)
        record["run_id"] = self._run_id
        context = self._context
        key = (record.get("project_id"), record.get("destination_region"))
        known = context.get(key)
        if known is None:
            known = context[key] = [None, None, _MISSING]
        if record["event"] == _ATTEMPT:
            if "attempt" not in record:
                record["attempt"] = 1
            _fill_context(record, known, 1)
            return record
        _fill_context(record, known, 0)
        get = record.get
        if "attempts" not in record:
            record["attempts"] = 1
        if "http_status" not in record:
            record["http_status"] = 200 if get("status") == "replicated" else None
        for field in _NULLS:
            if field not in record:
                record[field] = None
        duration: Any = get("duration_s")
        record["finished_at"] = ts
        record["started_at"] = (
            self._iso(us - round(duration * 1e6)) if type(duration) in (int, float) else None
        )
        return record


#: Result fields that are null when a compact line leaves them out.
_NULLS: Final = ("replication_record_id", "error_code", "error_msg", "manifest_line")


def _fill_context(record: dict[str, Any], known: list[Any], first: int) -> None:
    """Take the context fields (``_CONTEXT[first:]``) a line writes as the run's new values,
    and give it those it leaves out. ``known``: the values for the line's (project, region),
    the vault missing until a CBR line names one."""
    for index in range(first, 3):
        field = _CONTEXT[index]
        value = record.get(field, _MISSING)
        if value is _MISSING:
            value = known[index]
            if value is not _MISSING:
                record[field] = value
        else:
            known[index] = value


def _http_default(status: object) -> int | None:
    """A compact result's ``http_status`` when it has none: 200 when replicated, else null."""
    return 200 if status == "replicated" else None
