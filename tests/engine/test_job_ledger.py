"""A job's bookkeeping in the ledger: when each unfinished pair was first attempted."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from orchestrator.engine.job_ledger import first_attempts_of
from tests.helpers.ledgerlines import PROJECT, attempt, item, key, result, write

T1 = "2026-12-03T01:00:00+00:00"
T2 = "2026-12-03T02:00:00+00:00"


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_pair_s_first_attempt_since_its_last_result(tmp_path: Path) -> None:
    ledger = write(
        tmp_path / "l.jsonl",
        attempt(1) | {"ts": T1},
        attempt(1, 2) | {"ts": T2},  # a retry: the first attempt is still the one
        attempt(2) | {"ts": T1},
        result(2, "failed"),  # finished: nothing to reconcile
        attempt(3) | {"ts": T1},
        result(3, "gave_up"),
        attempt(3) | {"ts": T2},  # sent again after its result: since then
    )
    assert first_attempts_of(ledger) == {key(1): _at(T1), key(3): _at(T2)}


def test_a_cbr_pair_is_keyed_by_its_backup(tmp_path: Path) -> None:
    """A CBR line names ``backup_id``: its pair is (project, backup, region), as the task's
    key is, so that reconcile can tell a replica made before the first attempt."""
    cbr = attempt(1) | {"ts": T1, "destination_vault_id": "v" * 8}
    cbr["backup_id"] = cbr.pop("checkpoint_item_id")
    ledger = write(tmp_path / "l.jsonl", cbr, {**attempt(2), "project_id": None})
    assert first_attempts_of(ledger) == {(PROJECT, item(1), "cn-east-2"): _at(T1)}
