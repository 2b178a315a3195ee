"""The record reader: both copy vocabularies of the service, one normalised state."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from orchestrator.models import CopyWord
from orchestrator.service.records import (
    CBR_WORDS,
    CopyState,
    RecordReader,
    cbr_word,
    ledger_line_state,
    live_record_id,
)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        # A replication record's status (huaweicloud-sdk-java, CSBS v1 ReplicationRecord).
        ("waiting_replicate", CopyState.RUNNING),
        ("replicating", CopyState.RUNNING),
        ("success", CopyState.SUCCESS),
        ("fail", CopyState.FAILED),
        ("skip", CopyState.SKIPPED),
        # An item's extend_info.copy_status.
        ("waiting_copy", CopyState.RUNNING),
        ("copying", CopyState.RUNNING),
        ("na", None),
        ("", None),
        (None, None),
        ("  SUCCESS ", CopyState.SUCCESS),
    ],
)
def test_both_vocabularies(word: str | None, state: CopyState | None) -> None:
    assert RecordReader().state(word) is state


def test_skip_and_fail_are_final_running_is_not() -> None:
    assert [s.final for s in CopyState] == [False, True, True, True]
    assert [s.live for s in CopyState] == [True, True, False, False]


def test_an_unknown_word_is_running_and_said_once() -> None:
    reader = RecordReader()
    with capture_logs() as logs:
        assert [reader.state("paused") for _ in range(3)] == [CopyState.RUNNING] * 3
        assert reader.state("frozen") is CopyState.RUNNING
    assert [e["status"] for e in logs if e["event"] == "records.unknown_status"] == [
        "paused",
        "frozen",
    ]


def test_live_record_skips_failed_skipped_and_other_items() -> None:
    records = [
        {"id": "r1", "destination_region": "cn-east-2", "status": "skip"},
        {"id": "r2", "destination_region": "cn-east-2", "status": "fail"},
        {"id": "r3", "destination_region": "cn-south-1", "status": "success"},
        {"id": "r4", "destination_region": "cn-east-2", "status": "replicating",
         "source_checkpoint_item_id": "other"},
        "not a record",
    ]  # fmt: skip
    reader = RecordReader()
    assert live_record_id(records, reader, item_id="i", destination_region="cn-east-2") is None
    records.append({"id": "r5", "destination_region": "cn-east-2", "status": "waiting_replicate"})
    assert live_record_id(records, reader, item_id="i", destination_region="cn-east-2") == "r5"


def test_ledger_lines_old_and_new() -> None:
    reader = RecordReader()
    assert ledger_line_state({"copy_status": "skip", "state": "skipped"}, reader) is (
        CopyState.SKIPPED
    )
    assert ledger_line_state({"copy_status": "copying"}, reader) is CopyState.RUNNING  # old
    assert ledger_line_state({"copy_status": "fail", "state": "bogus"}, reader) is (
        CopyState.FAILED
    )


def test_every_word_of_the_service_has_one_meaning_and_cbr_speaks_them() -> None:
    reader = RecordReader()
    with capture_logs() as logs:
        meanings = {word: reader.state(word) for word in CopyWord}
    assert not logs  # no word of the vocabulary is unknown to the reader
    assert meanings[CopyWord.NA] is None
    assert {w for w, s in meanings.items() if s is CopyState.RUNNING} == {
        CopyWord.WAITING_COPY,
        CopyWord.COPYING,
        CopyWord.WAITING_REPLICATE,
        CopyWord.REPLICATING,
    }
    # CBR's words become CSBS's, and mean what CBR meant by them
    assert set(CBR_WORDS.values()) <= set(CopyWord)
    assert cbr_word("FAIL_REPLICATE") == cbr_word("timeout") == CopyWord.FAIL
    assert cbr_word("waiting") == CopyWord.WAITING_COPY
    assert cbr_word("Running") == CopyWord.COPYING
    assert cbr_word("skipped") == CopyWord.SKIP
    assert cbr_word("paused") == "paused"  # unknown: kept, for the reader to report
    assert cbr_word(None) == ""
