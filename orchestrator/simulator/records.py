"""The two kinds of things the estate holds: backups (checkpoint items) and replication
records. Both are immutable; a record's status is *derived* from the clock, so replication
progresses without a background task and is the same whichever request looks first.

A record speaks the record vocabulary (``waiting_replicate``, ``replicating``, ``success``,
``fail``, ``skip``: huaweicloud-sdk-java's CSBS ``ReplicationRecord``); the item's
``extend_info.copy_status`` speaks its own (``na``, ``waiting_copy``, ``copying``,
``success``, ``fail``): :data:`ITEM_COPY_STATUS` maps one to the other."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BUSY",
    "COPY_FAIL",
    "COPY_SKIP",
    "COPY_SUCCESS",
    "IN_FLIGHT",
    "ITEM_COPY_STATUS",
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
#: An item in the middle of another operation: the service refuses to replicate it (CSBS.2003).
BUSY = frozenset(
    {"waiting_protect", "protecting", "waiting_restore", "restoring", "waiting_delete", "deleting"}
)
COPY_SUCCESS = "success"
COPY_FAIL = "fail"
COPY_SKIP = "skip"
WAITING = "waiting_replicate"
REPLICATING = "replicating"
IN_FLIGHT = frozenset({WAITING, REPLICATING})
#: A record's status -> the item's ``extend_info.copy_status`` while that record is its newest.
#: Nothing public says what a skipped replication leaves on the item: ``na`` (no copy) is
#: our reading (see docs/service-fidelity.md).
ITEM_COPY_STATUS = {
    WAITING: "waiting_copy",
    REPLICATING: "copying",
    COPY_SUCCESS: "success",
    COPY_FAIL: "fail",
    COPY_SKIP: "na",
}


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

    ``waiting_replicate`` until ``copy_at``, ``replicating`` until ``end_at``, then
    ``success`` or ``fail`` (decided at creation by ``fails``, so the outcome is
    reproducible); a record that ``skips`` is ``skip`` from ``copy_at`` on (never copied).
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
    skips: bool = False

    def status(self, now: float) -> str:
        if now < self.copy_at:
            return WAITING
        if self.skips:
            return COPY_SKIP
        if now < self.end_at:
            return REPLICATING
        return COPY_FAIL if self.fails else COPY_SUCCESS

    def progress(self, now: float) -> int:
        if now < self.copy_at:
            return 0
        if self.skips:
            return 0
        if now >= self.end_at:
            # A failed copy stops part way; where exactly does not matter to anyone.
            return 37 if self.fails else 100
        return int(100 * (now - self.copy_at) / (self.end_at - self.copy_at))

    def blocks_duplicate(self, now: float) -> bool:
        """A replica that exists or is being made forbids another to the same region."""
        return self.status(now) not in (COPY_FAIL, COPY_SKIP)
