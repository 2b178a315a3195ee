"""Plain records shared by every layer: a replication task, its outcome, result statuses, the
service's words for a copy.

Frozen, slotted dataclasses: cheap to create by the million, safe to pass between tasks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FINAL_SUCCESS",
    "PROVIDER_ID",
    "CopyWord",
    "Durable",
    "Outcome",
    "PairKey",
    "ReplicationTask",
    "ResultStatus",
    "WorkItem",
]

#: CSBS has exactly one provider; its id is fixed by the service.
PROVIDER_ID = "fc4d5750-22e7-4798-8a46-f48f62c4c1da"

#: (source project id, checkpoint item id, destination region): replicated at most once.
PairKey = tuple[str, str, str]


class ResultStatus(enum.StrEnum):
    """The status of a ``result`` line in the ledger (a public contract)."""

    REPLICATED = "replicated"
    ALREADY_REPLICATED = "already_replicated"
    FAILED = "failed"
    GAVE_UP = "gave_up"
    REJECTED = "rejected"


FINAL_SUCCESS = frozenset({ResultStatus.REPLICATED, ResultStatus.ALREADY_REPLICATED})


class CopyWord(enum.StrEnum):
    """The service's own words for a copy, spelled here once: a replication record's
    ``status`` and an item's ``extend_info.copy_status`` (two vocabularies, see
    ``docs/service-fidelity.md``), which ``track`` records verbatim as a ``copy_status`` line's
    ``copy_status``. What each *means* is read in one place, ``service/records.py``."""

    NA = "na"  # an item's: no copy
    WAITING_COPY = "waiting_copy"  # an item's
    COPYING = "copying"  # an item's
    WAITING_REPLICATE = "waiting_replicate"  # a record's
    REPLICATING = "replicating"  # a record's
    SUCCESS = "success"  # both
    FAIL = "fail"  # both
    SKIP = "skip"  # a record's


@dataclass(frozen=True, slots=True)
class ReplicationTask:
    """One row of work: replicate one checkpoint item to one destination region.

    ``project_id`` is the *source* project, already resolved from the row or the run's default.
    ``line`` is the manifest line the row came from (0 when discovered from the API).
    For CBR, ``checkpoint_item_id`` holds the source *backup* id and ``destination_vault_id``
    the vault that receives the copy; a CSBS task has no vault.
    """

    checkpoint_item_id: str
    project_id: str
    destination_region: str
    destination_project_id: str
    source_region: str | None = None
    name: str | None = None
    description: str | None = None
    enable_acceleration: bool | None = None
    line: int = 0
    destination_vault_id: str | None = None

    @property
    def key(self) -> PairKey:
        return (self.project_id, self.checkpoint_item_id, self.destination_region)

    @property
    def is_cbr(self) -> bool:
        """A CBR v3 task (it names a destination vault), else CSBS."""
        return self.destination_vault_id is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What finally happened to one task, as the ledger records it."""

    status: ResultStatus
    replication_record_id: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error_msg: str | None = None
    attempts: int = 0
    #: The last request may have been applied (cut after sending) and nothing since has said
    #: whether it was: the next run must ask the service before sending the pair again.
    outcome_unknown: bool = False


class Durable(Protocol):
    """Something written that may not be on disk yet: ``durable()`` returns once it is."""

    async def durable(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A task as the pool receives it. ``reconcile_first`` is set when the ledger shows the
    request may already have been sent with no answer recorded: ask the service before
    sending again."""

    task: ReplicationTask
    reconcile_first: bool = False
