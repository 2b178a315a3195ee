"""Resume's history and the report fold the same ledger into the same pairs (hypothesis).

Three folds read pairs out of a ledger: :class:`History` (what ``resume`` and ``plan`` decide
on), the report's (:func:`scan`) and ``report --pairs`` (:func:`write_pairs`). They key a pair
with the one key of :mod:`orchestrator.ledger.format`, so for any ledger they must name the
same pairs with the same final status. The generated ledgers mix CSBS and CBR lines, item ids
spelled in upper case, duplicated lines, rejected rows recorded by runs that named their
manifest differently (relative, absolute), and lines without ids. The oracle is the plain
reading of the ledger: a pair's latest ``attempt``/``result`` line decides.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.insight.pairs import write_pairs
from orchestrator.insight.report import build_report
from orchestrator.insight.report_fold import scan
from orchestrator.ledger.format import PairKeys, pair_ids
from orchestrator.ledger.history import History
from orchestrator.models import PairKey
from tests.helpers.ledgerlines import PROJECT, RID, RID2, item, line

PROJECTS = (PROJECT, "c" * 32)
REGIONS = ("cn-east-2", "cn-south-1")
ITEMS = range(3)
VAULTS = ("11111111-2222-4333-8444-555555555555", "11111111-2222-4333-8444-666666666666")
# One manifest, as three runs named it: a run records it as typed, a resume as recorded.
MANIFESTS = ("m.csv", "/srv/dr/m.csv", "./m.csv")
UNIVERSE = [(p, item(n), r) for p in PROJECTS for n in ITEMS for r in REGIONS]
FINAL = ("replicated", "already_replicated", "failed", "gave_up")


def _ids(
    project: str, n: int, region: str, *, cbr: bool = False, upper: bool = False, vault: str = ""
) -> dict[str, Any]:
    spelled = item(n).upper() if upper else item(n)
    if cbr:  # a CBR line names the backup, and the vault next to the destination project
        return {
            "project_id": project,
            "backup_id": spelled,
            "destination_region": region,
            "destination_project_id": "b" * 32,
            "destination_vault_id": vault,
        }
    return {
        "project_id": project,
        "checkpoint_item_id": spelled,
        "destination_region": region,
        "destination_project_id": "b" * 32,
    }


pair_fields = st.builds(
    _ids,
    st.sampled_from(PROJECTS),
    st.sampled_from(ITEMS),
    st.sampled_from(REGIONS),
    cbr=st.booleans(),
    upper=st.booleans(),
    vault=st.sampled_from(VAULTS),
)
run_ids = st.sampled_from(["r1", "r2", "r3"])


def _attempt(ids: dict[str, Any], run: str, number: int) -> dict[str, Any]:
    return line("attempt", **ids, attempt=number) | {"run_id": run}


def _result(
    ids: dict[str, Any], run: str, status: str, rid: str | None, unknown: bool
) -> dict[str, Any]:
    record = line(
        "result",
        **ids,
        source_region="cn-north-1",
        status=status,
        replication_record_id=rid,
        http_status=200,
        error_code=None,
        error_msg=None,
        attempts=1,
        manifest_line=2,
    ) | {"run_id": run}
    if unknown and status == "gave_up":
        record["outcome_unknown"] = True
    return record


def _rejected(ids: dict[str, Any], run: str, manifest: str, number: int) -> dict[str, Any]:
    return line(
        "result",
        **ids,
        source_region=None,
        status="rejected",
        replication_record_id=None,
        error_code="manifest.invalid",
        error_msg="bad row",
        attempts=0,
        manifest=manifest,
        manifest_line=number,
        field="destination_region",
    ) | {"run_id": run}


ledger_lines = st.one_of(
    st.builds(_attempt, pair_fields, run_ids, st.integers(1, 3)),
    st.builds(
        _result,
        pair_fields,
        run_ids,
        st.sampled_from(FINAL),
        st.sampled_from([RID, RID2, None]),
        st.booleans(),
    ),
    st.builds(
        lambda ids, rid, word: line(
            "copy_status", **ids, replication_record_id=rid, copy_status=word
        ),
        pair_fields,
        st.sampled_from([RID, RID2]),
        st.sampled_from(["waiting_replicate", "replicating", "success", "fail", "skip"]),
    ),
    st.builds(_rejected, pair_fields, run_ids, st.sampled_from(MANIFESTS), st.integers(2, 4)),
    # Lines without the ids of a pair (written by hand?): no fold makes a pair of them.
    st.builds(lambda run: _attempt({"project_id": None}, run, 1), run_ids),
    st.builds(
        lambda run: line("run_started", manifest="m.csv", source="manifest") | {"run_id": run},
        run_ids,
    ),
)


def canonical(record: dict[str, Any]) -> PairKey:
    ids = pair_ids(record)
    assert ids is not None
    project, spelled, region = ids
    return project, spelled.lower(), region


def oracle(records: list[dict[str, Any]]) -> tuple[dict[PairKey, dict[str, Any]], set[Any]]:
    """Each pair's latest attempt or result line, and the distinct rejected manifest rows."""
    latest: dict[PairKey, dict[str, Any]] = {}
    rows = set()
    for record in records:
        if record["event"] not in ("attempt", "result") or pair_ids(record) is None:
            continue
        if record.get("status") == "rejected":
            key = canonical(record)
            rows.add((os.path.basename(record["manifest"]), record["manifest_line"], key[1:]))
        else:
            latest[canonical(record)] = record
    return latest, rows


def pairs_csv(records: list[dict[str, Any]], tmp: Path) -> list[dict[str, str]]:
    out = tmp / "pairs.csv"
    write_pairs(lambda: records, out, run="all")
    with out.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@given(records=st.lists(ledger_lines, max_size=30), twice=st.integers(0, 5))
@example(  # one rejected row, recorded by a run and by its resume (an absolute path)
    records=[_rejected(_ids(PROJECT, 0, "cn-east-2"), "r1", m, 3) for m in MANIFESTS[:2]],
    twice=0,
)
@example(  # one CBR pair, its id spelled two ways, copied into two vaults
    records=[
        _attempt(_ids(PROJECT, 0, "cn-east-2", cbr=True, upper=True, vault=VAULTS[0]), "r1", 1),
        _result(
            _ids(PROJECT, 0, "cn-east-2", cbr=True, vault=VAULTS[1]), "r1", "replicated", RID, False
        ),
    ],
    twice=0,
)
def test_history_and_report_agree_on_every_pair_and_its_final_status(
    records: list[dict[str, Any]], twice: int
) -> None:
    records = records + records[:twice]  # a duplicated tail, as a replayed ledger has
    latest, rows = oracle(records)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        ledger = tmp / "l.jsonl"
        ledger.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        history = History.load(ledger)
        csv_rows = pairs_csv(records, tmp)
    scanner = scan(records, "all", frozenset())
    report = build_report(records, run="all")

    # resume's history: each pair's latest final result, unknown when an attempt came after it
    # (or a result gave up after a request that may have been applied).
    in_history = {
        k for k in UNIVERSE if history.status(k) is not None or history.unknown_outcome(k)
    }
    assert in_history == set(latest)
    for key, record in latest.items():
        if record["event"] == "attempt":
            assert history.unknown_outcome(key)
        else:
            assert str(history.status(key)) == record["status"]
            assert history.unknown_outcome(key) == bool(record.get("outcome_unknown"))

    # the report: the same pairs, the latest line's status ("unknown" for an attempt)
    keys: PairKeys = scanner.keys
    labels = {k: scanner.tally.pairs.get(keys(*k)) for k in UNIVERSE}
    assert {k for k, label in labels.items() if label is not None} == in_history
    for key, record in latest.items():
        label = labels[key]
        assert label is not None
        expected = "unknown" if record["event"] == "attempt" else record["status"]
        assert label[1] == expected
        if label[1] == "unknown":
            assert history.unknown_outcome(key)
        else:
            assert label[1] == str(history.status(key))

    # report --pairs: one row per pair, the same status; one per rejected manifest row
    by_pair = [r for r in csv_rows if r["status"] != "rejected"]
    seen = {
        (
            r["project_id"],
            (r["checkpoint_item_id"] or r["backup_id"]).lower(),
            r["destination_region"],
        ): r["status"]
        for r in by_pair
    }
    assert len(seen) == len(by_pair)  # no pair twice
    assert seen == {k: label[1] for k, label in labels.items() if label is not None}
    assert len(csv_rows) - len(by_pair) == len(rows) == len(report.rejected)
    assert report.pairs == len(latest) + len(rows)
    assert history.rejected == sum(1 for r in records if r.get("status") == "rejected")
