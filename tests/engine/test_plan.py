"""The plan: dedupe per pair, conflicts, the ledger filter, and the two passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.engine.plan import Conflict, Plan
from orchestrator.engine.plan_decision import RegionCounts
from orchestrator.errors import ManifestError
from orchestrator.ledger.history import History
from orchestrator.models import ReplicationTask, WorkItem
from tests.helpers.manifests import make_rows, write_manifest

PROJECT = "0123456789abcdef0123456789abcdef"
X = "a" * 32
Y = "b" * 32
HEADER = "checkpoint_item_id,destination_region,destination_project_id\n"


def item(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def manifest(tmp_path: Path, *rows: tuple[int, str, str], name: str = "m.csv") -> Path:
    """Rows of (item number, destination region, destination project), from line 2."""
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{item(n)},{r},{d}\n" for n, r, d in rows))
    return path


def plan_of(path: Path, history: History | None = None, **kw: Any) -> Plan:
    return Plan.from_manifest(path, default_project_id=PROJECT, history=history, **kw)


def sent(plan: Plan) -> list[tuple[int, bool]]:
    """(line, reconcile_first) of every work item, in order."""
    return [(w.task.line, w.reconcile_first) for w in plan.work()]


def ledger(
    tmp_path: Path, *results: tuple[int, str, str], attempts: tuple[int, ...] = ()
) -> History:
    """A history from results (item number, region, status) and then bare attempts."""
    lines = []
    for n, region, status in results:
        lines.append(
            {
                "v": 1,
                "event": "result",
                "ts": "2025-01-01T00:00:00.000000+00:00",
                "run_id": "r0",
                "project_id": PROJECT,
                "checkpoint_item_id": item(n),
                "destination_region": region,
                "destination_project_id": X,
                "status": status,
                "replication_record_id": None,
            }
        )
    for n in attempts:
        lines.append(
            {
                "v": 1,
                "event": "attempt",
                "ts": "2025-01-01T00:00:00.000000+00:00",
                "run_id": "r0",
                "project_id": PROJECT,
                "checkpoint_item_id": item(n),
                "destination_region": "cn-east-2",
                "destination_project_id": X,
                "attempt": 1,
            }
        )
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return History.load(path)


def test_exact_repeats_collapse(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        (1, "cn-east-2", X),  # 2
        (2, "cn-east-2", X),  # 3
        (1, "cn-east-2", X),  # 4: duplicate of line 2
        (1, "cn-south-1", X),  # 5: another region, another pair
        (1, "cn-east-2", X),  # 6: duplicate again
    )
    plan = plan_of(path)
    assert sent(plan) == [(2, False), (3, False), (5, False)]
    assert plan.by_region == {
        "cn-east-2": RegionCounts(to_send=2, duplicates=2),
        "cn-south-1": RegionCounts(to_send=1),
    }
    assert plan.totals == RegionCounts(to_send=3, duplicates=2)
    assert plan.totals.rows == 5
    assert plan.conflicts == []
    assert plan.regions == ["cn-east-2", "cn-south-1"]


def test_conflicting_rows_are_all_reported_and_none_sent(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        (1, "cn-east-2", X),  # 2
        (1, "cn-east-2", X),  # 3: looks like a duplicate until line 5
        (2, "cn-east-2", X),  # 4
        (1, "cn-east-2", Y),  # 5: conflict
        (1, "cn-east-2", X),  # 6: still part of the conflict
        (3, "cn-east-2", X),  # 7
        (3, "cn-east-2", Y),  # 8: a second conflict
    )
    plan = plan_of(path)
    assert sent(plan) == [(4, False)]
    assert plan.conflicts == [
        Conflict((PROJECT, item(1), "cn-east-2"), (2, 3, 5, 6), (X, X, Y, X)),
        Conflict((PROJECT, item(3), "cn-east-2"), (7, 8), (X, Y)),
    ]
    assert plan.by_region["cn-east-2"] == RegionCounts(to_send=1, conflicts=6)
    assert plan.totals.rows == 7


def test_conflict_takes_back_a_ledger_decision(tmp_path: Path) -> None:
    history = ledger(tmp_path, (1, "cn-east-2", "replicated"), (2, "cn-east-2", "failed"))
    path = manifest(
        tmp_path,
        (1, "cn-east-2", X),
        (2, "cn-east-2", X),
        (1, "cn-east-2", Y),
        (2, "cn-east-2", Y),
    )
    plan = plan_of(path, history, retry_failed=True)
    assert sent(plan) == []
    assert plan.by_region["cn-east-2"] == RegionCounts(conflicts=4)
    assert len(plan.conflicts) == 2


def test_ledger_filter(tmp_path: Path) -> None:
    history = ledger(
        tmp_path,
        (1, "cn-east-2", "replicated"),
        (2, "cn-east-2", "already_replicated"),
        (3, "cn-east-2", "failed"),
        (4, "cn-east-2", "gave_up"),
        (5, "cn-east-2", "rejected"),
        (6, "cn-south-1", "replicated"),  # another region: not this pair
        attempts=(7, 2),  # 7 never answered; 2 was sent again after its result
    )
    rows = [(n, "cn-east-2", X) for n in range(1, 9)] + [(6, "cn-east-2", X)]
    path = manifest(tmp_path, *rows)
    # Lines: item n is on line n + 1; the repeated item 6 is on line 10.
    plan = plan_of(path, history)
    assert sent(plan) == [(3, True), (5, False), (6, False), (7, False), (8, True), (9, False)]
    assert plan.by_region["cn-east-2"] == RegionCounts(
        to_send=6, already_done=1, skipped_failed=1, duplicates=1, unknown_outcome=2
    )

    retry = plan_of(path, history, retry_failed=True)
    assert (4, False) in sent(retry)
    assert retry.by_region["cn-east-2"] == RegionCounts(
        to_send=7, already_done=1, duplicates=1, retry_failed=1, unknown_outcome=2
    )


def test_failed_copy_counts_as_failed(tmp_path: Path) -> None:
    history = ledger(tmp_path, (1, "cn-east-2", "replicated"))
    path = tmp_path / "ledger.jsonl"
    with path.open("ab") as f:
        f.write(
            orjson.dumps(
                {
                    "v": 1,
                    "event": "copy_status",
                    "ts": "2025-01-01T00:00:00.000000+00:00",
                    "run_id": "t",
                    "project_id": PROJECT,
                    "checkpoint_item_id": item(1),
                    "destination_region": "cn-east-2",
                    "replication_record_id": None,
                    "copy_status": "fail",
                }
            )
            + b"\n"
        )
    history = History.load(path)
    rows = manifest(tmp_path, (1, "cn-east-2", X))
    assert sent(plan_of(rows, history)) == []
    assert plan_of(rows, history).by_region["cn-east-2"].skipped_failed == 1
    retry = plan_of(rows, history, retry_failed=True)
    assert sent(retry) == [(2, False)]
    assert retry.by_region["cn-east-2"].retry_failed == 1


def test_invalid_rows_are_kept_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        HEADER
        + f"{item(1)},cn-east-2,{X}\n"
        + f"bad,cn-east-2,{X}\n"  # 3: placed in its region
        + f"{item(2)},EAST,{X}\n"  # 4: no usable region
        + f"bad2,cn-east-2,{X}\n"  # 5: over the cap
    )
    plan = plan_of(path, max_rejected=2)
    assert [(r.line, r.field) for r in plan.rejected] == [
        (3, "checkpoint_item_id"),
        (4, "destination_region"),
    ]
    assert plan.rejected_dropped == 1
    assert plan.by_region == {"cn-east-2": RegionCounts(to_send=1, invalid=2)}
    assert plan.invalid_unplaced == 1
    assert plan.totals.invalid == 3
    assert plan.totals.rows == 4
    assert sent(plan) == [(2, False)]


def test_work_can_be_read_again_but_not_after_a_change(tmp_path: Path) -> None:
    path = manifest(tmp_path, (1, "cn-east-2", X), (2, "cn-east-2", X))
    plan = plan_of(path)
    assert sent(plan) == sent(plan) == [(2, False), (3, False)]
    path.write_text(HEADER + f"{item(9)},cn-east-2,{X}\n")
    with pytest.raises(ManifestError, match="changed"):
        sent(plan)


def test_nothing_to_send_reads_nothing(tmp_path: Path) -> None:
    history = ledger(tmp_path, (1, "cn-east-2", "replicated"))
    path = manifest(tmp_path, (1, "cn-east-2", X))
    plan = plan_of(path, history)
    path.unlink()  # pass 2 has nothing to read
    assert list(plan.work()) == []
    assert plan.regions == []


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot open"):
        plan_of(tmp_path / "none.csv")


def test_work_items_carry_the_first_rows_task(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    rows = [
        {"checkpoint_item_id": item(1), "destination_region": "cn-east-2",
         "destination_project_id": X, "name": "first"},
        {"checkpoint_item_id": item(1), "destination_region": "cn-east-2",
         "destination_project_id": X, "name": "second"},
    ]  # fmt: skip
    write_manifest(path, rows, "jsonl")
    assert list(plan_of(path).work()) == [
        WorkItem(ReplicationTask(item(1), PROJECT, "cn-east-2", X, name="first", line=1))
    ]


def test_from_tasks(tmp_path: Path) -> None:
    history = ledger(tmp_path, (3, "cn-east-2", "replicated"), attempts=(4,))

    def task(n: int, dest: str = X) -> ReplicationTask:
        return ReplicationTask(item(n), PROJECT, "cn-east-2", dest)

    tasks = [task(1), task(1), task(2), task(3), task(4), task(2, Y)]
    plan = Plan.from_tasks(iter(tasks), history=history)
    assert list(plan.work()) == [WorkItem(task(1)), WorkItem(task(4), reconcile_first=True)]
    assert plan.conflicts == [Conflict((PROJECT, item(2), "cn-east-2"), (0, 0), (X, Y))]
    assert plan.by_region["cn-east-2"] == RegionCounts(
        to_send=2, already_done=1, duplicates=1, conflicts=2, unknown_outcome=1
    )
    assert plan.rejected == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_fifty_thousand_rows(tmp_path: Path, fmt: Any) -> None:
    path = tmp_path / f"big.{fmt}"
    rows = make_rows(50_000, seed=5, duplicate_rate=0.02, conflict_rate=0.002, invalid_rate=0.005)
    write_manifest(path, rows, fmt)
    plan = Plan.from_manifest(path, default_project_id=None)
    totals = plan.totals
    assert totals.rows == 50_000
    assert totals.duplicates > 0
    assert totals.invalid == len(plan.rejected) > 0
    assert plan.conflicts
    work = list(plan.work())
    assert len(work) == totals.to_send
    keys = [w.task.key for w in work]
    assert len(set(keys)) == len(keys)  # each pair once
    assert not {c.key for c in plan.conflicts} & set(keys)
    lines = [w.task.line for w in work]
    assert lines == sorted(lines)  # manifest order
    conflict_rows = sum(len(c.lines) for c in plan.conflicts)
    assert conflict_rows == totals.conflicts
