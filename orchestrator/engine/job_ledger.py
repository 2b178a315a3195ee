"""A job's bookkeeping in the ledger beside the run itself: the history folded for planning,
the snapshots saved while and after it runs, when reconciled pairs were first attempted,
what ``run_started`` pins of the manifest, and the rejected rows."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from orchestrator.engine.job_spec import JobSpec
from orchestrator.engine.plan import Plan
from orchestrator.errors import LedgerError
from orchestrator.ledger.file import iter_records
from orchestrator.ledger.format import PAIR_EVENTS, LedgerEvent, pair_ids
from orchestrator.ledger.history import History
from orchestrator.ledger.recorder import LedgerRecorder
from orchestrator.ledger.run_lines import ManifestPinFields
from orchestrator.models import PairKey

__all__ = [
    "first_attempts_of",
    "keep_snapshot",
    "manifest_pin_fields",
    "plan_history",
    "record_rejections",
    "snapshots_meanwhile",
]

log = structlog.get_logger("orchestrator.engine.job")


def plan_history(ledger: Path) -> History:
    """The ledger folded for planning: statuses only, no record ids."""
    return History.load(ledger, record_ids=False)


async def keep_snapshot(spec: JobSpec, history: History) -> float | None:
    """Fold this run's lines into the history and save it, when the ledger has grown enough
    since the last snapshot; returns the seconds that took (0 when not needed). A snapshot
    is a cache: failing to write one is only logged (and returns None). Logged here, on the
    event loop, not from the worker thread."""
    started = time.monotonic()
    try:
        size = await anyio.to_thread.run_sync(_save_if_grown, spec, history)
    except (OSError, LedgerError) as exc:
        log.warning("history.snapshot_not_saved", ledger=str(spec.ledger), error=str(exc))
        return None
    if not size:
        return 0.0
    took = time.monotonic() - started
    log.info(
        "history.snapshot_saved",
        ledger=str(spec.ledger),
        covers_bytes=history.ledger_end,
        pairs=len(history),
        bytes=size,
        seconds=round(took, 3),
    )
    return took


def _save_if_grown(spec: JobSpec, history: History) -> int:
    """The snapshot's size, or 0 when the ledger has not grown enough to save one."""
    if os.stat(spec.ledger).st_size - history.snapshot_end < spec.snapshot_after_bytes:
        return 0
    history.catch_up(spec.ledger)
    return history.save_snapshot(spec.ledger)


#: A running job spends at most about 1/_SNAPSHOT_DUTY of its time saving snapshots: a save
#: costs in proportion to the pairs, so a ledger of millions of pairs is saved less often.
_SNAPSHOT_DUTY = 50


async def snapshots_meanwhile(
    spec: JobSpec,
    history: History,
    keep: Callable[[JobSpec, History], Awaitable[float | None]] = keep_snapshot,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Save snapshots while the pool runs, so that a run killed outright (SIGKILL, OOM, a lost
    node) leaves about ``snapshot_after_bytes`` of ledger to fold, not all of its lines.

    The plan was built before the pool started and nothing else reads the history until
    the pool ends, so the worker thread may fold into it; cancelling this task waits for a
    save in progress to finish (it is not abandoned). After a failed save only the end of
    the run tries again (one warning, not one per check)."""
    took: float | None = 0.0
    while took is not None:
        await sleep(max(spec.snapshot_check_s, _SNAPSHOT_DUTY * took))
        took = await keep(spec, history)


def first_attempts_of(ledger: Path) -> dict[PairKey, float]:
    """When each pair with an attempt and no result after it was first attempted since its
    last result (epoch seconds): reconcile tells a record made by that attempt from one that
    was there before. Read only when the plan reconciles pairs (after a kill, a few)."""
    since: dict[PairKey, float] = {}
    for record in iter_records(ledger):
        event = record.get("event")
        if event not in PAIR_EVENTS:
            continue
        key = pair_ids(record)  # a CBR line names its backup: the pair all folds know
        if key is None:
            continue
        if event == LedgerEvent.RESULT:
            since.pop(key, None)
        elif key not in since:
            try:
                since[key] = datetime.fromisoformat(str(record.get("ts"))).timestamp()
            except ValueError:
                continue
    return since


def manifest_pin_fields(plan: Plan) -> ManifestPinFields | None:
    """What ``run_started`` records of the manifest's bytes, for ``resume`` to compare."""
    if plan.pin is None or not plan.pin.sealed:
        return None
    return ManifestPinFields(size=plan.pin.size, sha256=plan.pin.sha256)


def record_rejections(recorder: LedgerRecorder, plan: Plan, spec: JobSpec) -> int:
    manifest = str(spec.manifest) if spec.manifest else "discover"
    count = 0
    for row in plan.rejected:
        recorder.rejected(
            manifest=manifest, line=row.line, field=row.field, reason=row.reason, ids=_row_ids(row)
        )
        count += 1
    for conflict in plan.conflicts:
        project_id, item_id, region = conflict.key
        for line, dest in zip(conflict.lines, conflict.destination_project_ids, strict=False):
            recorder.rejected(
                manifest=manifest,
                line=line,
                field="destination_project_id",
                reason="conflict: this pair is listed with different destination projects "
                f"(lines {', '.join(map(str, conflict.lines))}); none was sent",
                ids={
                    "checkpoint_item_id": item_id,
                    "project_id": project_id,
                    "destination_region": region,
                    "destination_project_id": dest,
                },
            )
            count += 1
    return count


def _row_ids(row: Any) -> dict[str, str | None]:
    # A CBR row's backup id travels as checkpoint_item_id; the recorder names it backup_id.
    names: Iterable[str] = (
        "checkpoint_item_id",
        "project_id",
        "destination_region",
        "destination_project_id",
    )
    return {name: getattr(row, name, None) for name in names}
