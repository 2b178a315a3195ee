"""Several ledgers read as one (``report`` and ``coverage`` over one ledger per account or
shard), and the HTML report's wiring.

Each ledger is locked by one writer, so runs never interleave inside a file; across files
they may. ``--run last`` over several ledgers therefore means the last run *of each* ledger:
the lines of every other run are left out before the report's fold (which then reads
"all" of what remains). ``copy_status`` lines always pass: a copy finishes long after the
run that asked for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.insight.report_model import Report
from orchestrator.ledger.file import iter_records, last_record
from orchestrator.ledger.format import LedgerEvent

__all__ = ["html_report", "selected_records", "several"]

Records = Callable[[], Iterable[Mapping[str, Any]]]


def several(paths: Sequence[Path]) -> Iterator[Mapping[str, Any]]:
    for path in paths:
        yield from iter_records(path)


def _only(path: Path, run_id: str) -> Iterator[Mapping[str, Any]]:
    for record in iter_records(path):
        if record.get("event") == LedgerEvent.COPY_STATUS or record.get("run_id") == run_id:
            yield record


def selected_records(paths: Sequence[Path], run: str) -> tuple[Records, str]:
    """A way to read the ledgers' lines again (each call starts over) and the run selector
    the report should use on them."""
    if len(paths) == 1:
        return (lambda: iter_records(paths[0])), run
    if run != "last":
        return (lambda: several(paths)), run
    lasts: list[tuple[Path, str]] = []
    for path in paths:
        started = last_record(path, "run_started")
        if started is None or not isinstance(started.get("run_id"), str):
            raise ConfigError(f"{path}: the ledger has no run_started line")
        lasts.append((path, started["run_id"]))

    def records() -> Iterator[Mapping[str, Any]]:
        for path, run_id in lasts:
            yield from _only(path, run_id)

    return records, "all"


def html_report(report: Report, records: Iterable[Mapping[str, Any]]) -> str:
    try:
        from orchestrator.insight.html import report_html  # noqa: PLC0415 - plotly is heavy
    except ImportError as exc:
        raise ConfigError(_NO_PLOTLY) from exc
    return report_html(report, records)


_NO_PLOTLY = "--format html needs plotly: pip install 'csbs-orchestrator[html]' (or plotly>=5.20)"
