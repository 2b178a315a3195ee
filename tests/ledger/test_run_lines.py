"""``run_started`` and ``run_finished`` as typed records: the lines keep the keys and the order
they always had (a ledger written by e661494, before the records, is the reference)."""

from __future__ import annotations

from pathlib import Path

import orjson

from orchestrator.ledger.format import StopReason
from orchestrator.ledger.run_lines import ManifestPinFields, RunFinished, RunStarted

OLD = Path(__file__).parent / "data" / "ledger-v0.1-e661494.jsonl"
FRAME = ("v", "event", "ts", "run_id")


def _old_keys(event: str) -> list[str]:
    for raw in OLD.read_bytes().splitlines():
        line = orjson.loads(raw)
        if line["event"] == event:
            return [k for k in line if k not in FRAME]
    raise AssertionError(f"no {event} line in {OLD.name}")


def test_run_started_keeps_its_keys_in_their_order() -> None:
    started = RunStarted(
        manifest="/m.csv", source="manifest", settings={}, version="1", retry_failed=False
    )
    # e661494 wrote no retry_failed (added since) and no pin for that manifest.
    assert list(started.fields())[: len(_old_keys("run_started"))] == _old_keys("run_started")
    pinned = RunStarted(
        manifest="/m.csv",
        source="manifest",
        settings={},
        version="1",
        retry_failed=True,
        pin=ManifestPinFields(size=10, sha256="ab"),
    )
    assert list(pinned.fields()) == [
        "manifest",
        "manifest_size",
        "manifest_sha256",
        "source",
        "settings",
        "version",
        "retry_failed",
    ]


def test_run_finished_keeps_its_keys_in_their_order() -> None:
    finished = RunFinished(
        counts={"replicated": 1},
        rejected=0,
        duplicates=0,
        conflicts=0,
        already_done=0,
        interrupted=True,
        reason=StopReason.SIGNAL,
        duration_s=1.5,
        exit_code=6,
        requests=1,
        retries=0,
        pace={},
    )
    # e661494's line ends at retries (pace came with issue 20).
    assert list(finished.fields()) == [*_old_keys("run_finished"), "pace"]
    assert orjson.loads(orjson.dumps(finished.fields()))["reason"] == "signal"
