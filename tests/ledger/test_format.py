"""The ledger's one pair key: what a line is about, for every fold of the ledger."""

from __future__ import annotations

from orchestrator.ledger.format import ROW_KEY_SIZE, PairKeys, pair_ids
from tests.helpers.ledgerlines import PROJECT, item, line, pair, result


def test_pair_keys_are_exact_and_compact() -> None:
    keys = PairKeys()
    a = keys(PROJECT, item(1), "cn-east-2")
    assert a == keys(PROJECT, item(1), "cn-east-2")
    assert len(a) == 17
    distinct = {
        a,
        keys(PROJECT, item(2), "cn-east-2"),
        keys(PROJECT, item(1), "cn-south-1"),
        keys("c" * 32, item(1), "cn-east-2"),
        keys(PROJECT, "not-a-uuid", "cn-east-2"),
    }
    assert len(distinct) == 5
    assert len(keys(PROJECT, "not-a-uuid", "cn-east-2")) == 12
    # Combination numbers stay unambiguous past one byte.
    many = {keys(PROJECT, item(1), f"r{i}-x") for i in range(300)}
    assert len(many) == 300


def test_a_cbr_line_is_about_its_backup_and_an_id_s_spelling_is_not_a_pair() -> None:
    keys = PairKeys()
    csbs = result(1, "replicated")
    cbr = {
        **pair(1),
        "checkpoint_item_id": None,
        "backup_id": item(1).upper(),
        "destination_vault_id": "v",
    }
    assert pair_ids(cbr) == (PROJECT, item(1).upper(), "cn-east-2")
    assert keys.of(csbs) == keys.of(cbr) == keys.of({**cbr, "destination_vault_id": "w"})
    assert pair_ids({**csbs, "project_id": 7}) is None
    assert keys.of({**csbs, "destination_region": None}) is None


def test_a_rejected_row_counts_by_its_manifest_line_under_any_name_of_the_manifest() -> None:
    keys = PairKeys()

    def rejected(manifest: str, number: int) -> dict[str, object]:
        return line("result", **pair(1), status="rejected", manifest=manifest, manifest_line=number)

    row = keys.counted(rejected("m.csv", 3))
    assert row is not None
    assert len(row) == ROW_KEY_SIZE  # no pair key is this long: a row never meets a pair
    assert keys.counted(rejected("/srv/dr/m.csv", 3)) == row
    assert keys.counted(rejected("m.csv", 4)) != row
    assert keys.counted(rejected("other.csv", 3)) != row
    assert keys.counted(result(1, "failed")) == keys.of(pair(1)) != row
    # A result without a pair counts as its row; an attempt without one counts under nothing.
    assert keys.counted({**result(1, "failed"), "project_id": None}) is not None
    assert keys.counted(line("attempt", project_id=None, attempt=1)) is None
