"""The ledger's fold saved beside it: a load from the snapshot knows exactly what a full fold
knows, and a snapshot that does not describe the ledger is never used."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.errors import LedgerError
from orchestrator.ledger.history import History
from orchestrator.ledger.snapshot import snapshot_path
from orchestrator.models import PairKey
from tests.helpers.ledgerlines import (
    DEST,
    PROJECT,
    RID,
    RID2,
    attempt,
    copy_status,
    item,
    key,
    line,
    pair,
    result,
    write,
)

REGIONS = [f"r-{n}" for n in range(300)]  # more than 256 combinations: keys of two lengths


def estate_ledger(path: Path) -> Path:
    """A ledger with every kind of line the fold treats differently."""
    return write(
        path,
        line("run_started", manifest="/m1.csv", source="manifest", settings={}, version="1"),
        *[attempt(n, region=r) for n, r in enumerate(REGIONS)],
        *[result(n, "replicated", RID, region=r) for n, r in enumerate(REGIONS[:200])],
        result(200, "failed", region=REGIONS[200]),
        result(201, "gave_up", region=REGIONS[201]) | {"outcome_unknown": True},
        result(202, "already_replicated", "not-a-uuid-record", region=REGIONS[202]),
        line("result", status="rejected", project_id=None, checkpoint_item_id=None),
        line("attempt", project_id=PROJECT),  # no ids: skipped
        line("result", **pair(900), status="someday_new", replication_record_id=None),
        line(
            "result",
            project_id=PROJECT,
            checkpoint_item_id="not-a-uuid",
            destination_region="r-0",
            destination_project_id=DEST,
            status="replicated",
            replication_record_id=RID,
        ),
        copy_status(0, "fail", RID, "r-0"),
        line("run_finished", counts={}, reason=None),
    )


def more_lines(path: Path) -> None:
    """A later run: new pairs, a resend, copy statuses about the current and an old replica."""
    with path.open("ab") as f:
        for record in (
            line("run_started", manifest="/m2.csv", source="manifest", settings={}, version="1"),
            attempt(1000, region="r-new"),
            result(1000, "replicated", RID2, region="r-new"),
            result(1, "replicated", RID2, region="r-1"),
            copy_status(1, "fail", RID, "r-1"),  # about the replaced replica: ignored
            copy_status(2, "fail", None, "r-2"),
            copy_status(3, "fail", RID, "r-3"),
            attempt(4, region="r-4"),
            line("run_finished", counts={}, reason="signal"),
        ):
            f.write(orjson.dumps(record) + b"\n")


def keys_of(path: Path) -> list[PairKey]:
    found = []
    with path.open("rb") as f:
        for raw in f:
            record = orjson.loads(raw)
            ids = (
                record.get("project_id"),
                record.get("checkpoint_item_id"),
                record.get("destination_region"),
            )
            if all(type(i) is str for i in ids):
                found.append(ids)
    return found


def knowledge(history: History, keys: list[PairKey]) -> dict[str, Any]:
    """Everything a plan, resume or report can ask of a history."""
    return {
        "pairs": len(history),
        "per_pair": [
            (history.status(k), history.unknown_outcome(k), history.copy_status(k)) for k in keys
        ],
        "counts": history.counts(),
        "unknown": history.unknown_outcomes(),
        "counters": (history.runs, history.lines, history.rejected, history.skipped),
        "last_runs": (history.last_run_started, history.last_run_finished),
        "folded": (history.ledger_end, history.ledger_lines),
    }


def full_fold(path: Path) -> History:
    """The history without any snapshot (moved aside for the load)."""
    snapshot = Path(snapshot_path(path))
    aside = snapshot.with_name(snapshot.name + ".aside")
    if snapshot.exists():
        snapshot.rename(aside)
    try:
        history = History.load(path, record_ids=False)
    finally:
        if aside.exists():
            aside.rename(snapshot)
    assert history.snapshot_end == 0
    return history


def test_a_snapshot_restores_exactly_what_the_full_fold_knows(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    saved = History.load(path, record_ids=False)
    assert saved.snapshot_note == "no snapshot"
    saved.save_snapshot(path)

    restored = History.load(path, record_ids=False)

    assert restored.snapshot_note == "snapshot"
    assert restored.snapshot_end == path.stat().st_size
    keys = [*keys_of(path), key(5000)]
    assert knowledge(restored, keys) == knowledge(saved, keys)
    assert restored.copy_failed((PROJECT, item(0), "r-0"))
    assert restored.keys("p", item(1), "r-1") == saved.keys("p", item(1), "r-1")


def test_the_lines_after_the_snapshot_are_folded_on_top(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    History.load(path, record_ids=False).save_snapshot(path)
    covered = path.stat().st_size
    more_lines(path)

    history = History.load(path, record_ids=False)

    assert history.snapshot_end == covered
    keys = keys_of(path)
    assert knowledge(history, keys) == knowledge(full_fold(path), keys)
    assert not history.copy_failed((PROJECT, item(1), "r-1"))  # the old replica's failure
    assert history.copy_failed((PROJECT, item(2), "r-2"))
    assert history.copy_failed((PROJECT, item(3), "r-3"))
    assert history.unknown_outcome((PROJECT, item(4), "r-4"))
    assert history.runs == 2


def test_catching_up_then_saving_covers_the_whole_ledger(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    history = History.load(path, record_ids=False)
    more_lines(path)

    assert history.catch_up(path) == 9
    history.save_snapshot(path)

    again = History.load(path, record_ids=False)
    assert again.snapshot_end == path.stat().st_size
    assert again.catch_up(path) == 0
    keys = keys_of(path)
    assert knowledge(again, keys) == knowledge(full_fold(path), keys)


def test_copy_statuses_match_replicas_in_a_process_with_another_hash_seed(
    tmp_path: Path,
) -> None:
    """Record ids are kept as a hash; a snapshot carries it into the next process."""
    path = write(tmp_path / "l.jsonl", attempt(1), result(1, "replicated", RID))
    History.load(path, record_ids=False).save_snapshot(path)
    with path.open("ab") as f:
        f.write(orjson.dumps(copy_status(1, "fail", RID2)) + b"\n")  # an older replica's
        f.write(orjson.dumps(copy_status(2, "fail", RID)) + b"\n")
        f.write(orjson.dumps(result(2, "replicated", RID)) + b"\n")
        f.write(orjson.dumps(copy_status(1, "copying", RID)) + b"\n")
    probe = (
        "import sys; from orchestrator.ledger.history import History; "
        "h = History.load(sys.argv[1], record_ids=False); "
        "print(h.snapshot_note, h.copy_status(tuple(sys.argv[2:])))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(  # noqa: S603 (this interpreter, a fixed probe)
        [sys.executable, "-c", probe, str(path), *key(1)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["snapshot", "copying"]


def random_line(rng: random.Random) -> dict[str, Any]:
    """Any line the fold treats in its own way, about few pairs, so that they meet often."""
    n, region = rng.randrange(6), rng.choice(["r-0", "r-1", "r-2"])
    record_id = rng.choice([RID, RID2, None, "odd-id"])
    kind = rng.randrange(8)
    if kind < 3:
        return attempt(n, rng.randint(1, 3), region=region)
    if kind < 6:
        status = rng.choice(["replicated", "already_replicated", "failed", "gave_up", "rejected"])
        line_ = result(n, status, record_id, region=region)
        return line_ | {"outcome_unknown": True} if rng.random() < 0.2 else line_
    if kind == 6:
        status = rng.choice(["waiting_copy", "copying", "success", "fail"])
        return copy_status(n, status, record_id, region)
    return line(rng.choice(["run_started", "run_finished"]), manifest="/m.csv", reason=None)


def test_any_split_of_any_ledger_folds_as_the_whole(tmp_path: Path) -> None:
    """Snapshot the fold of a random prefix, append the rest: the same answers as folding
    the whole ledger at once (300 seeded ledgers)."""
    for seed in range(300):
        rng = random.Random(seed)
        records = [random_line(rng) for _ in range(rng.randint(1, 40))]
        split = rng.randint(0, len(records))
        path = write(tmp_path / f"l{seed}.jsonl", *records[:split])
        History.load(path, record_ids=False).save_snapshot(path)
        prefix = path.stat().st_size
        with path.open("ab") as f:
            f.writelines(orjson.dumps(r) + b"\n" for r in records[split:])

        history = History.load(path, record_ids=False)

        assert (history.snapshot_note, history.snapshot_end) == ("snapshot", prefix), seed
        keys = [(PROJECT, item(n), r) for n in range(6) for r in ("r-0", "r-1", "r-2")]
        assert knowledge(history, keys) == knowledge(full_fold(path), keys), seed


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])


def rewrite_as_a_new_file(path: Path) -> None:
    new = path.with_name("new")
    new.write_bytes(path.read_bytes())
    new.replace(path)


def edit_in_place(path: Path) -> None:
    """Change one pair's item id, keeping the length: only the bytes change."""
    data = path.read_bytes()
    at = data.rindex(item(150).encode())
    with path.open("r+b") as f:
        f.seek(at)
        f.write(item(151).encode())


def edit_the_head(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.read_bytes().index(b"/m1.csv"))
        f.write(b"/m9.csv")


def damage_snapshot(path: Path) -> None:
    snapshot = Path(snapshot_path(path))
    data = bytearray(snapshot.read_bytes())
    data[-3] ^= 0xFF
    snapshot.write_bytes(bytes(data))


def other_version(path: Path) -> None:
    snapshot = Path(snapshot_path(path))
    snapshot.write_bytes(snapshot.read_bytes().replace(b'{"v":2,', b'{"v":3,', 1))


def garbage(path: Path) -> None:
    Path(snapshot_path(path)).write_bytes(b"\x00" * 100)


def duplicate_combination(path: Path) -> None:
    snapshot = Path(snapshot_path(path))
    snapshot.write_bytes(
        snapshot.read_bytes().replace(
            b'["' + PROJECT.encode() + b'","r-1"]', b'["' + PROJECT.encode() + b'","r-0"]', 1
        )
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (truncate, "shorter"),
        (rewrite_as_a_new_file, "not the one"),
        (edit_in_place, "not the one"),
        (edit_the_head, "not the one"),
        (damage_snapshot, "damaged"),
        (other_version, "another format version"),
        (garbage, "not a history snapshot"),
        (duplicate_combination, "listed twice"),
    ],
)
def test_a_snapshot_that_does_not_describe_the_ledger_is_not_used(
    tmp_path: Path, change: Callable[[Path], None], why: str
) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    History.load(path, record_ids=False).save_snapshot(path)
    change(path)

    history = History.load(path, record_ids=False)

    assert why in history.snapshot_note
    assert history.snapshot_end == 0
    keys = keys_of(path)
    assert knowledge(history, keys) == knowledge(full_fold(path), keys)


def test_a_line_removed_from_the_middle_of_a_long_ledger_is_noticed(tmp_path: Path) -> None:
    """Past the hashed windows, a removed line still shifts the bytes under the last one."""
    path = write(tmp_path / "l.jsonl", *[result(n, "replicated", RID) for n in range(9000)])
    assert path.stat().st_size > 3 << 20
    History.load(path, record_ids=False).save_snapshot(path)
    lines = path.read_bytes().splitlines(keepends=True)
    removed = lines.pop(4500)  # nowhere near either end
    path.write_bytes(b"".join(lines))  # the same file (inode), rewritten
    with path.open("ab") as f:  # as long as before
        f.write(orjson.dumps(result(4500, "gave_up")).ljust(len(removed) - 1) + b"\n")

    history = History.load(path, record_ids=False)

    assert "not the one" in history.snapshot_note
    assert history.status(key(4500)) == "gave_up"


def test_a_history_with_record_ids_reads_the_whole_ledger(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    History.load(path, record_ids=False).save_snapshot(path)

    history = History.load(path)

    assert history.snapshot_end == 0
    assert history.record_id((PROJECT, item(0), "r-0")) == RID
    with pytest.raises(ValueError, match="record_ids=False"):
        history.save_snapshot(path)


def test_no_snapshot_of_more_than_the_ledger_holds(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    history = History.load(path, record_ids=False)
    truncate(path)  # by hand, after the history read it

    with pytest.raises(LedgerError, match="shorter"):
        history.save_snapshot(path)

    assert not Path(snapshot_path(path)).exists()


def test_a_snapshot_is_replaced_whole(tmp_path: Path) -> None:
    path = estate_ledger(tmp_path / "l.jsonl")
    History.load(path, record_ids=False).save_snapshot(path)
    more_lines(path)
    (tmp_path / ".l.jsonl.snapshot.k1ll3d.tmp").write_bytes(b"a save killed midway")
    (tmp_path / ".other.jsonl.snapshot.x.tmp").write_bytes(b"another ledger's")
    History.load(path, record_ids=False).save_snapshot(path)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.jsonl.snapshot.x.tmp",
        "l.jsonl",
        "l.jsonl.snapshot",
    ]
    assert History.load(path, record_ids=False).snapshot_end == path.stat().st_size


def test_a_version_1_snapshot_still_reads_and_new_copy_words_survive(tmp_path: Path) -> None:
    """Version 2 only adds copy-status codes (skip, waiting_replicate, replicating): a v1
    snapshot is read as before, and the new words come back from a v2 one (issue 15)."""
    path = estate_ledger(tmp_path / "l.jsonl")
    History.load(path, record_ids=False).save_snapshot(path)
    snapshot = Path(snapshot_path(path))
    snapshot.write_bytes(snapshot.read_bytes().replace(b'{"v":2,', b'{"v":1,', 1))
    history = History.load(path, record_ids=False)
    assert history.snapshot_end > 0
    keys = keys_of(path)
    assert knowledge(history, keys) == knowledge(full_fold(path), keys)

    with path.open("ab") as f:
        f.write(orjson.dumps(copy_status(1, "skip", RID, REGIONS[1])) + b"\n")
        f.write(orjson.dumps(copy_status(2, "replicating", RID, REGIONS[2])) + b"\n")
    History.load(path, record_ids=False).save_snapshot(path)
    again = History.load(path, record_ids=False)
    assert again.snapshot_end > 0
    assert knowledge(again, keys) == knowledge(full_fold(path), keys)
    assert again.copy_status((PROJECT, item(1), REGIONS[1])) == "skip"
    assert again.copy_status((PROJECT, item(2), REGIONS[2])) == "replicating"
