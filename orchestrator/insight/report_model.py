"""What a ledger summary says: the :class:`Report` record and its parts, and the statuses shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.ledger.format import UNKNOWN
from orchestrator.models import ResultStatus

__all__ = [
    "CBR_MANIFEST_HEADER",
    "COPY_FAILED",
    "MANIFEST_HEADER",
    "STATUS_ORDER",
    "UNKNOWN",
    "ErrorSummary",
    "RejectedRow",
    "Report",
    "RunInfo",
    "RunSelector",
]

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
RunSelector = Literal["last", "all"] | str


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
