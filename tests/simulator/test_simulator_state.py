"""The estate without HTTP: determinism, the replicate rule, progression, listings."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from orchestrator.errors import ConfigError
from orchestrator.simulator import FaultConfig, ManualClock, SimulatorConfig
from orchestrator.simulator.filters import ItemFilter, RecordFilter
from orchestrator.simulator.records import Item
from orchestrator.simulator.refusal import Refusal
from orchestrator.simulator.state import Estate

DEST = "b" * 32
NO_LIMITS = FaultConfig()


def _estate(items: int = 300, **knobs: object) -> tuple[Estate, ManualClock]:
    clock = ManualClock()
    return Estate(SimulatorConfig.from_knobs(items=items, **knobs), clock), clock


def _fresh(estate: Estate) -> Item:
    """An available item with no replication history."""
    return next(
        item
        for project in estate.projects
        for item in estate.items_of(project.id)
        if item.status == "available" and not estate.records_of(item)
    )


def _destination(estate: Estate, item: Item) -> str:
    return estate.capabilities()[item.region][0]


def test_same_seed_same_estate_other_seed_other_estate() -> None:
    one, _ = _estate(seed=7)
    two, _ = _estate(seed=7)
    three, _ = _estate(seed=8)
    ids = [i.id for p in one.projects for i in one.items_of(p.id)]
    assert ids == [i.id for p in two.projects for i in two.items_of(p.id)]
    assert ids != [i.id for p in three.projects for i in three.items_of(p.id)]
    assert one.projects == two.projects


def test_estate_is_realistic() -> None:
    estate, _ = _estate(items=1000)
    items = [i for p in estate.projects for i in estate.items_of(p.id)]
    assert len(items) == 1000
    statuses = Counter(i.status for i in items)
    assert statuses["available"] > 700
    assert {"protecting", "error", "deleted"} <= set(statuses)
    assert len({p.region for p in estate.projects}) >= 2
    assert all(len(p.id) == 32 for p in estate.projects)
    histories = Counter(r.status(estate.now()) for i in items for r in estate.records_of(i))
    assert histories["success"] > 0
    assert histories["fail"] > 0


def test_replicate_progresses_waiting_replicating_success() -> None:
    estate, clock = _estate(copy_wait_s=10, copy_duration_s=100)
    item = _fresh(estate)
    region = _destination(estate, item)
    record = estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    assert record.status(estate.now()) == "waiting_replicate"
    clock.advance(10)
    assert record.status(estate.now()) == "replicating"
    clock.advance(50)
    assert record.progress(estate.now()) == 50
    clock.advance(50)
    assert record.status(estate.now()) == "success"
    assert record.progress(estate.now()) == 100


def test_duplicates_refused_while_in_flight_and_after_success() -> None:
    estate, clock = _estate()
    item = _fresh(estate)
    region = _destination(estate, item)
    estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    with pytest.raises(Refusal) as refused:
        estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    assert (refused.value.status, refused.value.code) == (400, "BackupService.1009")
    assert refused.value.kind == "duplicate"
    clock.advance(3600)
    with pytest.raises(Refusal):
        estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)


def test_a_failed_copy_frees_the_region() -> None:
    estate, clock = _estate()
    item = _fresh(estate)
    region = _destination(estate, item)
    always_fail = dataclasses.replace(NO_LIMITS, copy_fail_rate=1.0)
    first = estate.replicate(item.project_id, item.id, region, DEST, limits=always_fail)
    clock.advance(3600)
    assert first.status(estate.now()) == "fail"
    second = estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    assert second.id != first.id
    assert estate.latest_record(item.id, region) is second


def test_configurable_duplicate_code() -> None:
    estate, _ = _estate(duplicate_code="CSBS.6031", duplicate_status=409)
    item = _fresh(estate)
    region = _destination(estate, item)
    estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    with pytest.raises(Refusal) as refused:
        estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    assert (refused.value.status, refused.value.code) == (409, "CSBS.6031")


@pytest.mark.parametrize("scope", ["region", "global"])
def test_capacity_limit_and_release(scope: str) -> None:
    estate, clock = _estate(copy_wait_s=1, copy_duration_s=9, seed=3)
    limits = dataclasses.replace(NO_LIMITS, max_in_flight=2, capacity_scope=scope)  # type: ignore[arg-type]
    clock.advance(3600)  # let the generated in-flight copies finish
    project = estate.projects[0]
    fresh = [
        i
        for i in estate.items_of(project.id)
        if i.status == "available" and not estate.records_of(i)
    ]
    region = estate.capabilities()[project.region][0]
    for item in fresh[:2]:
        estate.replicate(project.id, item.id, region, DEST, limits=limits)
    assert estate.in_flight(region) == 2
    with pytest.raises(Refusal) as refused:
        estate.replicate(project.id, fresh[2].id, region, DEST, limits=limits)
    # A code-less 503 (documented "unavailable"); CSBS.0001 means a policy quota, not this.
    assert (refused.value.status, refused.value.code) == (503, "")
    other = estate.capabilities()[project.region][1]
    if scope == "region":  # another destination has its own allowance
        estate.replicate(project.id, fresh[3].id, other, DEST, limits=limits)
    else:
        with pytest.raises(Refusal):
            estate.replicate(project.id, fresh[3].id, other, DEST, limits=limits)
    clock.advance(10)
    assert estate.in_flight(None) == 0
    estate.replicate(project.id, fresh[2].id, region, DEST, limits=limits)


def test_refusals_for_unknown_wrong_project_unavailable_and_incapable() -> None:
    estate, _ = _estate()
    item = _fresh(estate)
    other_project = next(p for p in estate.projects if p.id != item.project_id)
    region = _destination(estate, item)
    cases = [
        (item.project_id, "no-such-id", region, 404, "CSBS.3001"),
        (other_project.id, item.id, region, 404, "CSBS.3001"),
        (item.project_id, item.id, item.region, 400, "BackupService.1005"),
        (item.project_id, item.id, "eu-west-0", 400, "BackupService.1005"),
    ]
    for project_id, item_id, destination, status, code in cases:
        with pytest.raises(Refusal) as refused:
            estate.replicate(project_id, item_id, destination, DEST, limits=NO_LIMITS)
        assert (refused.value.status, refused.value.code) == (status, code)
    for bad_status, code in (("protecting", "CSBS.2003"), ("error", "CSBS.4000")):
        bad = next(
            i for p in estate.projects for i in estate.items_of(p.id) if i.status == bad_status
        )
        with pytest.raises(Refusal) as refused:
            estate.replicate(
                bad.project_id, bad.id, _destination(estate, bad), DEST, limits=NO_LIMITS
            )
        assert (refused.value.status, refused.value.code) == (400, code)


def test_listing_pages_by_marker_in_sort_order() -> None:
    estate, _ = _estate(items=250)
    project = estate.projects[0].id
    everything = estate.list_items(project, ItemFilter(), limit=1000)
    assert [i.created_at for i in everything] == sorted(
        (i.created_at for i in everything), reverse=True
    )
    pages: list[Item] = []
    marker = None
    while True:
        page = estate.list_items(project, ItemFilter(), marker=marker, limit=7)
        if not page:
            break
        pages.extend(page)
        marker = page[-1].id
    assert pages == everything
    by_name = estate.list_items(project, ItemFilter(), sort=(("name", False),))
    assert [i.name for i in by_name] == sorted(i.name for i in by_name)
    available = estate.list_items(project, ItemFilter(status="available"), offset=2, limit=5)
    assert all(i.status == "available" for i in available)
    assert available == [i for i in everything if i.status == "available"][2:7]
    assert estate.count_items(project, ItemFilter(status="available")) == sum(
        1 for i in everything if i.status == "available"
    )
    with pytest.raises(Refusal):
        estate.list_items(project, ItemFilter(), marker="unknown")


def test_added_items_appear_in_listings() -> None:
    estate, _ = _estate(items=10)
    project = estate.projects[1].id
    before = estate.list_items(project, ItemFilter())
    added = estate.add_items(project, 3)
    after = estate.list_items(project, ItemFilter())
    assert len(after) == len(before) + 3
    assert {i.id for i in added} <= {i.id for i in after}
    assert after[:3] == sorted(added, key=lambda i: i.id)  # newest first, ties by id


def test_record_listing_filters_and_counts() -> None:
    estate, clock = _estate(items=300)
    item = _fresh(estate)
    region = _destination(estate, item)
    record = estate.replicate(item.project_id, item.id, region, DEST, limits=NO_LIMITS)
    page, count = estate.list_records(item.project_id, RecordFilter(checkpoint_item_id=item.id))
    assert (page, count) == ([record], 1)
    waiting, _ = estate.list_records(item.project_id, RecordFilter(status="waiting_replicate"))
    assert record in waiting
    clock.advance(3600)
    done, _ = estate.list_records(
        item.project_id, RecordFilter(destination_region=region, status="success")
    )
    assert record in done
    everything, total = estate.list_records(item.project_id, RecordFilter())
    assert everything[0] is record  # newest first
    assert total == len(everything)
    second, _ = estate.list_records(item.project_id, RecordFilter(), marker=record.id, limit=2)
    assert second == everything[1:3]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig.from_knobs(p503=0.7, p500=0.5)
    with pytest.raises(ConfigError):
        SimulatorConfig.from_knobs(regions=("mars-1",))
    with pytest.raises(ConfigError, match="records_endpoint"):
        SimulatorConfig.from_knobs(records_endpoint="no")  # a string, however truthy
    with pytest.raises(ConfigError):
        FaultConfig().updated({"p503": "lots"})
    with pytest.raises(ConfigError):
        FaultConfig().updated({"no_such_knob": 1})
    assert FaultConfig().updated({"p503": 1, "retry_after_s": None}).p503 == 1.0


def test_secrets_stay_out_of_repr() -> None:
    config = SimulatorConfig(sk="very-secret-sk", password="very-secret-pw")
    assert "very-secret" not in repr(config)
