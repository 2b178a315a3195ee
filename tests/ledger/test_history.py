"""History: the ledger folded per pair, as resume and the plan read it."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from orchestrator.ledger.history import History, PairView
from orchestrator.models import CopyWord, ResultStatus
from tests.helpers.ledgerlines import (
    PROJECT,
    RID,
    RID2,
    attempt,
    copy_status,
    item,
    key,
    line,
    result,
    write,
)


def test_missing_ledger_is_an_empty_history(tmp_path: Path) -> None:
    history = History.load(tmp_path / "none.jsonl")
    assert len(history) == 0
    assert history.last_run_started is None
    assert history.status(key(1)) is None
    assert not history.unknown_outcome(key(1))
    assert history.record_id(key(1)) is None
    assert history.view(history.keys(*key(1))) == PairView(None, False, False)


def test_latest_result_and_unknown_outcome(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.jsonl",
        line("run_started", manifest="/m1.csv", source="manifest", settings={}, version="1"),
        attempt(1),
        result(1, "replicated", RID),
        attempt(2),  # sent, then the run crashed: outcome unknown
        attempt(3),
        attempt(3, 2),
        result(3, "gave_up"),
        result(4, "failed"),
        attempt(4),  # a retry run sent it again and crashed
        line("run_finished", counts={}, reason="signal"),
        line("run_started", manifest="/m2.csv", source="manifest", settings={"a": 1}, version="1"),
    )
    history = History.load(path)
    assert len(history) == 4
    assert history.status(key(1)) is ResultStatus.REPLICATED
    assert history.record_id(key(1)) == RID
    assert not history.unknown_outcome(key(1))
    assert history.status(key(2)) is None
    assert history.unknown_outcome(key(2))
    assert history.status(key(3)) is ResultStatus.GAVE_UP
    assert not history.unknown_outcome(key(3))
    assert history.status(key(4)) is ResultStatus.FAILED
    assert history.unknown_outcome(key(4))
    assert history.view(history.keys(*key(4))) == PairView(ResultStatus.FAILED, True, False)
    assert history.last_run_started is not None
    assert history.last_run_started["manifest"] == "/m2.csv"
    assert history.last_run_finished is not None
    assert history.last_run_finished["reason"] == "signal"
    assert history.runs == 2
    assert history.lines == 11
    assert history.counts() == {
        ResultStatus.REPLICATED: 1,
        ResultStatus.GAVE_UP: 1,
        ResultStatus.FAILED: 1,
    }
    assert history.unknown_outcomes() == 2
    assert key(1) in history
    assert key(9) not in history
    assert "nonsense" not in history


def test_a_later_result_replaces_the_earlier_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.jsonl",
        result(1, "failed"),
        attempt(1),
        result(1, "already_replicated"),
        result(2, "replicated", RID),
        result(2, "gave_up"),  # the record id belonged to the replaced result
    )
    history = History.load(path)
    assert history.status(key(1)) is ResultStatus.ALREADY_REPLICATED
    assert not history.unknown_outcome(key(1))
    assert history.status(key(2)) is ResultStatus.GAVE_UP
    assert history.record_id(key(2)) is None


def test_pairs_differ_by_region_and_project(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.jsonl",
        result(1, "replicated", region="cn-east-2"),
        result(1, "failed", region="cn-south-1"),
    )
    history = History.load(path)
    assert history.status(key(1, "cn-east-2")) is ResultStatus.REPLICATED
    assert history.status(key(1, "cn-south-1")) is ResultStatus.FAILED
    assert history.status(("c" * 32, item(1), "cn-east-2")) is None


def test_rejected_rows_have_no_pair(tmp_path: Path) -> None:
    rejected = line(
        "result",
        checkpoint_item_id=None,
        project_id=None,
        destination_region=None,
        status="rejected",
        manifest="/m.csv",
        manifest_line=7,
        field="checkpoint_item_id",
    )
    rejected_with_ids = result(5, "rejected")
    history = History.load(write(tmp_path / "l.jsonl", rejected, rejected_with_ids))
    assert len(history) == 0
    assert history.rejected == 2
    assert history.status(key(5)) is None


def test_copy_status_tracks_the_current_replica(tmp_path: Path) -> None:
    path = write(
        tmp_path / "l.jsonl",
        result(1, "replicated", RID),
        copy_status(1, "copying", RID),
        copy_status(1, "fail", RID),
        result(2, "replicated", RID2),
        copy_status(2, "fail", RID2),
        copy_status(2, "success", RID2),
        result(3, "replicated", RID2),
        copy_status(3, "fail", RID),  # about another replica: ignored
    )
    history = History.load(path)
    assert history.copy_failed(key(1))
    assert history.copy_status(key(1)) == "fail"
    assert history.status(key(1)) is ResultStatus.REPLICATED
    assert history.view(history.keys(*key(1))).copy_failed
    assert not history.copy_failed(key(2))
    assert history.copy_status(key(2)) == "success"
    assert history.copy_status(key(3)) is None

    # A new result (the pair was sent again) forgets the failed copy of the old replica.
    with path.open("ab") as f:
        f.write(orjson.dumps(result(1, "replicated", RID2)) + b"\n")
    history = History.load(path)
    assert not history.copy_failed(key(1))
    assert history.record_id(key(1)) == RID2


def test_a_plan_s_history_keeps_no_record_ids_but_still_matches_copy_statuses(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "l.jsonl",
        result(1, "replicated", RID),
        copy_status(1, "fail", RID),
        result(2, "replicated", RID2),
        copy_status(2, "fail", RID),  # about another replica: ignored
        result(3, "gave_up"),
        attempt(3),
    )
    full, lean = History.load(path), History.load(path, record_ids=False)
    for n in (1, 2, 3):
        k = full.keys(*key(n))
        assert lean.view(lean.keys(*key(n))) == full.view(k)
    assert lean.copy_failed(key(1))
    assert not lean.copy_failed(key(2))
    assert lean.unknown_outcome(key(3))
    assert lean.record_id(key(1)) is None
    assert full.record_id(key(1)) == RID


def test_record_ids_round_trip_exactly(tmp_path: Path) -> None:
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(50)]
    odd = ["REC-UPPER-1", "042CD047-A7C9-4905-A859-402950AC8440", "x"]
    records = [result(i, "replicated", rid) for i, rid in enumerate(ids + odd)]
    history = History.load(write(tmp_path / "l.jsonl", *records))
    assert [history.record_id(key(i)) for i in range(len(records))] == ids + odd


def test_item_ids_that_are_not_uuids_still_key_pairs(tmp_path: Path) -> None:
    odd = {**result(1, "replicated"), "checkpoint_item_id": "not-a-uuid"}
    other = {**result(2, "failed"), "checkpoint_item_id": "not-a-uuid-either"}
    history = History.load(write(tmp_path / "l.jsonl", odd, other))
    assert history.status((PROJECT, "not-a-uuid", "cn-east-2")) is ResultStatus.REPLICATED
    assert history.status((PROJECT, "not-a-uuid-either", "cn-east-2")) is ResultStatus.FAILED
    assert len(history) == 2


def test_lines_without_ids_are_skipped(tmp_path: Path) -> None:
    broken = {**attempt(1), "project_id": None}
    history = History.load(write(tmp_path / "l.jsonl", broken, result(2, "weird-status")))
    assert len(history) == 0
    assert history.skipped == 2


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "l.jsonl", result(1, "replicated"), tail=b'{"v":1,"event":"res')
    assert History.load(path).status(key(1)) is ResultStatus.REPLICATED


def test_many_pairs_load(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    with path.open("wb") as f:
        for i in range(25_000):
            f.write(orjson.dumps(attempt(i)) + b"\n")
            f.write(orjson.dumps(result(i, "replicated", str(uuid.UUID(int=i)))) + b"\n")
    history = History.load(path)
    assert len(history) == 25_000
    assert history.counts() == {ResultStatus.REPLICATED: 25_000}
    assert history.record_id(key(24_999)) == str(uuid.UUID(int=24_999))
    assert history.unknown_outcomes() == 0


def test_every_copy_word_of_the_service_is_kept(tmp_path: Path) -> None:
    """``track`` records the service's word; the history keeps every one (``na`` is no copy:
    track never records it)."""
    words = [w for w in CopyWord if w is not CopyWord.NA]
    for n, word in enumerate(words):
        ledger = write(
            tmp_path / f"{n}.jsonl", result(n, "replicated", RID), copy_status(n, word, RID)
        )
        history = History.load(ledger)
        assert history.copy_status(key(n)) == word
        assert type(history.copy_status(key(n))) is str  # plain text, as the ledger has it
        assert history.copy_failed(key(n)) is (word is CopyWord.FAIL)
