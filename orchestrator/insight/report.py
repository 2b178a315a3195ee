"""Summaries of a ledger: what a run (or every run) did, as a table, JSON or CSV; and a manifest
of the pairs worth sending again. Here: :func:`build_report` and what counts how; the fold is
in :mod:`.report_fold`, the record in :mod:`.report_model`, the table/JSON/CSV in
:mod:`.report_render`, the manifest of pairs to send again in :mod:`.failed_manifest`.

The input is any iterable of ledger records (schema v1), typically
``ledger.iter_records(path)``. It is read once, as a stream: memory grows with the number of
distinct *pairs* in the selected runs (about 150 bytes each: a 17-byte key and a shared
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
  A rejected manifest row counts once per manifest line (the manifest by its file name),
  as the run counted it. Pairs are keyed as ``resume`` keys them
  (:class:`~orchestrator.ledger.format.PairKeys`).
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

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.insight.report_fold import scan
from orchestrator.insight.report_model import (
    STATUS_ORDER,
    ErrorSummary,
    Report,
    RunInfo,
    RunSelector,
)
from orchestrator.service.records import CopyState

__all__ = ["build_report"]


def build_report(
    records: Iterable[Mapping[str, Any]], *, run: RunSelector = "last", top: int = 10
) -> Report:
    """Summarise the selected runs of a ledger (see the module docstring for what counts how).

    With ``run="all"`` the latest result of each pair wins for the status counts.
    Raises :class:`ConfigError` when a run id is not in the ledger, :class:`LedgerError` for a
    ledger of a newer schema.
    """
    scanner = scan(records, run, frozenset())
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
