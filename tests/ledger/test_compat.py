"""Ledgers and snapshots written by earlier versions fold to the same history today.

``data/ledger-v0.1-e661494.jsonl`` was written by the flat package (commit e661494, before the
layered one) against its simulator with faults: three runs (503s, 500s, malformed answers,
requests applied then cut, a gave-up pair resumed with ``--retry-failed``, duplicate rows, a
rejected row, duplicate refusals) and a ``track`` that appended copy statuses, some failed.
Its ``.snapshot`` and ``.fold.json`` (the history and the reports of that version, keyed by
pair) were written by the same code. Whatever we change in the ledger package, these must
still read the same.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import orjson

from orchestrator.insight.report import build_report
from orchestrator.insight.report_render import report_dict
from orchestrator.ledger.file import iter_records
from orchestrator.ledger.history import History
from orchestrator.models import PairKey

DATA = Path(__file__).parent / "data"
LEDGER = DATA / "ledger-v0.1-e661494.jsonl"


def _keys(ledger: Path) -> list[PairKey]:
    keys = set()
    for line in ledger.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("event") in ("attempt", "result", "copy_status") and record.get(
            "checkpoint_item_id"
        ):
            keys.add(
                (record["project_id"], record["checkpoint_item_id"], record["destination_region"])
            )
    return sorted(keys)


def _view(history: History, keys: list[PairKey], *, with_ids: bool) -> dict[str, Any]:
    pairs = {}
    for key in keys:
        copy = history.copy_status(key)
        pairs["|".join(key)] = [
            str(history.status(key)),
            history.unknown_outcome(key),
            None if copy is None else str(copy),
            history.copy_failed(key),
            history.record_id(key) if with_ids else None,
        ]
    return {
        "pairs": pairs,
        "counts": {str(s): n for s, n in sorted(history.counts().items())},
        "unknown": history.unknown_outcomes(),
        "runs": history.runs,
        "rejected": history.rejected,
        "skipped": history.skipped,
    }


def _copy_with_snapshot(tmp: Path) -> Path:
    """The fixture in ``tmp``, its snapshot re-pointed at the copy's inode (the snapshot names
    the file it describes by inode; its body, which is what we check, is untouched)."""
    ledger = tmp / LEDGER.name
    shutil.copyfile(LEDGER, ledger)
    raw = (DATA / f"{LEDGER.name}.snapshot").read_bytes()
    magic, header, body = raw.split(b"\n", 2)
    meta = orjson.loads(header)
    meta["ledger"]["ino"] = os.stat(ledger).st_ino
    (tmp / f"{LEDGER.name}.snapshot").write_bytes(b"\n".join([magic, orjson.dumps(meta), body]))
    return ledger


def test_an_old_ledger_and_its_snapshot_fold_as_they_did(tmp_path: Path) -> None:
    expected = orjson.loads((DATA / f"{LEDGER.name[: -len('.jsonl')]}.fold.json").read_bytes())
    ledger = _copy_with_snapshot(tmp_path)
    keys = _keys(ledger)
    assert len(keys) == 99

    full = History.load(ledger)
    assert _view(full, keys, with_ids=True) == expected["full"]

    fast = History.load(ledger, record_ids=False)
    assert fast.snapshot_end == ledger.stat().st_size  # restored from the old snapshot
    assert _view(fast, keys, with_ids=False) == expected["fast"]

    # A report may learn new keys; every one the old version wrote keeps its value.
    _assert_contains(report_dict(build_report(iter_records(ledger))), expected["report_last"])
    last = report_dict(build_report(iter_records(ledger), run="all"))
    _assert_contains(last, expected["report_all"])


def _assert_contains(actual: Any, expected: Any, where: str = "report") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} is gone"
            _assert_contains(actual[key], value, f"{where}.{key}")
    else:
        assert actual == expected, where
