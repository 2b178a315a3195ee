"""The two kinds of things the estate holds: backups (checkpoint items) and replication
records. Both are immutable; a record's status is *derived* from the clock, so replication
progresses without a background task and is the same whichever request looks first."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COPY_FAIL",
    "COPY_SUCCESS",
    "IN_FLIGHT",
    "ITEM_STATUSES",
    "Item",
    "Project",
    "Record",
]

ITEM_STATUSES = frozenset(
    {
        "waiting_protect",
        "protecting",
        "available",
        "waiting_restore",
        "restoring",
        "error",
        "waiting_delete",
        "deleting",
        "deleted",
    }
)
COPY_SUCCESS = "success"
COPY_FAIL = "fail"
IN_FLIGHT = frozenset({"waiting_copy", "copying"})


@dataclass(frozen=True, slots=True)
class Project:
    """A project is regional on Huawei Cloud: its id implies its (source) region."""

    id: str
    region: str


@dataclass(frozen=True, slots=True)
class Item:
    """One backup. Times are simulated epoch seconds."""

    id: str
    project_id: str
    region: str
    checkpoint_id: str
    name: str
    description: str
    resource_id: str
    resource_name: str
    status: str
    created_at: float
    protected_at: float
    size_mb: int
    az: str
    policy_id: str
    incremental: bool
    tags: tuple[tuple[str, str], ...] = ()
    resource_type: str = "OS::Nova::Server"


@dataclass(frozen=True, slots=True)
class Record:
    """One replication of ``item`` to ``destination_region``.

    ``waiting_copy`` until ``copy_at``, ``copying`` until ``end_at``, then ``success`` or
    ``fail`` (decided at creation by ``fails``, so the outcome is reproducible).
    """

    id: str
    item: Item
    destination_region: str
    destination_project_id: str
    destination_checkpoint_id: str
    destination_checkpoint_item_id: str
    created_at: float
    copy_at: float
    end_at: float
    fails: bool
    seq: int
    """Position in the project's record list: O(1) markers for paging."""
    name: str = ""
    auto_trigger: bool = False
    enable_acceleration: bool = False

    def status(self, now: float) -> str:
        if now < self.copy_at:
            return "waiting_copy"
        if now < self.end_at:
            return "copying"
        return COPY_FAIL if self.fails else COPY_SUCCESS

    def progress(self, now: float) -> int:
        if now < self.copy_at:
            return 0
        if now >= self.end_at:
            # A failed copy stops part way; where exactly does not matter to anyone.
            return 37 if self.fails else 100
        return int(100 * (now - self.copy_at) / (self.end_at - self.copy_at))

    def blocks_duplicate(self, now: float) -> bool:
        """A replica that exists or is being made forbids another to the same region."""
        return self.status(now) != COPY_FAIL
