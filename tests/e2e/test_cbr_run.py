"""CBR v3 end to end: our CbrClient against the simulator's CBR face, a bulk ``run`` with
faults, bad manifests refused before anything is sent, and ``resume`` keeping the service."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main as cli
from orchestrator.config.settings import RunSettings
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import JobResult, JobSpec
from orchestrator.engine.plan import Plan
from orchestrator.engine.pool_types import Replicator
from orchestrator.errors import AlreadyReplicatedError, ManifestError, PermanentApiError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.models import FINAL_SUCCESS, ReplicationTask
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.cbr import CbrClient
from orchestrator.service.client import CsbsClient
from orchestrator.service.protocol import ReplicationService
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.cbr import OP_LOGS
from orchestrator.simulator.cbr import REPLICATE as CBR_REPLICATE
from orchestrator.simulator.cbr_views import vault_id
from orchestrator.simulator.sample import CBR_MANIFEST_COLUMNS, cbr_rows, write_estate_manifest
from tests.helpers.runkit import FAST

MakeSimulator = Callable[..., Simulator]
_SUCCESS = {str(s) for s in FINAL_SUCCESS}


def _services() -> tuple[ReplicationService, ReplicationService]:
    """Both clients satisfy the protocol (checked by mypy, not at run time)."""
    return CsbsClient(), CbrClient()


def _client(sim: Simulator) -> CbrClient:
    return CbrClient(
        ClientSettings(endpoint=sim.base_url), AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    )


def _fresh(sim: Simulator, count: int) -> list[ReplicationTask]:
    project = sim.state.projects[0]
    region = sim.state.capabilities()[project.region][0]
    dest = sim.state.destination_projects[region]
    items = [
        i
        for i in sim.state.items_of(project.id)
        if i.status == "available" and not sim.state.records_of(i)
    ]
    return [
        ReplicationTask(
            checkpoint_item_id=i.id,
            project_id=project.id,
            destination_region=region,
            destination_project_id=dest,
            source_region=project.region,
            destination_vault_id=vault_id(dest, region),
        )
        for i in items[:count]
    ]


# -- the client -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cbr_client_replicates_reconciles_lists_and_follows(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=40) as sim, _client(sim) as client:
        task = _fresh(sim, 1)[0]
        assert await client.find_replication(task) is None
        record_id = await client.replicate(task)
        assert sim.state.latest_record(task.checkpoint_item_id, task.destination_region)
        assert await client.find_replication(task) == record_id
        with pytest.raises(AlreadyReplicatedError) as caught:
            await client.replicate(task)
        assert caught.value.error_code == "BackupService.1009"

        records = await client.replication_records(
            task.project_id,
            source_item_id=task.checkpoint_item_id,
            destination_region=task.destination_region,
        )
        assert [(r["id"], r["status"]) for r in records] == [(record_id, "waiting_copy")]
        sim.advance(sim.config.copy_wait_s + 1)
        records = await client.replication_records(
            task.project_id, source_item_id=task.checkpoint_item_id
        )
        assert records[0]["status"] == "copying"
        assert 0 <= records[0]["extra_info"]["progress"] <= 100

        caps = await client.capabilities(task.project_id)
        assert caps == {k: list(v) for k, v in sim.state.capabilities().items()}
        listed = [b["id"] async for b in client.iter_items(task.project_id, page_size=7)]
        assert sorted(listed) == sorted(i.id for i in sim.state.items_of(task.project_id))
        assert await client.count_items(task.project_id) == len(listed)


@pytest.mark.anyio
async def test_cbr_refusals_are_permanent_and_name_the_code(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=40) as sim, _client(sim) as client:
        task = _fresh(sim, 1)[0]
        wrong_region = ReplicationTask(
            **{
                **_fields(task),
                "destination_vault_id": vault_id(task.destination_project_id, "cn-north-1"),
            }
        )
        with pytest.raises(PermanentApiError) as caught:
            await client.replicate(wrong_region)
        assert caught.value.error_code == "BackupService.1013"
        other_project = ReplicationTask(
            **{**_fields(task), "destination_project_id": sim.state.projects[1].id}
        )
        with pytest.raises(PermanentApiError) as caught:
            await client.replicate(other_project)
        assert caught.value.error_code == "BackupService.1011"


def _fields(task: ReplicationTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in task.__dataclass_fields__}


# -- a bulk run with faults -------------------------------------------------------------------


def _factory(sim: Simulator) -> Callable[[], AbstractAsyncContextManager[Replicator]]:
    return lambda: _client(sim)


async def _run(sim: Simulator, manifest: Path, ledger: Path) -> JobResult:
    settings = RunSettings.of(
        endpoint=sim.base_url,
        service="cbr",
        **{**FAST, "max_attempts": 30, "retry_budget": 100.0, "concurrency": 16},
    )
    spec = JobSpec(ledger=ledger, settings=settings, manifest=manifest, handle_signals=False)
    return await run_job(spec, _factory(sim))


@pytest.mark.anyio
async def test_cbr_run_under_faults_replicates_each_pair_once(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    faults = {
        "p503": 0.25,
        "p_drop": 0.03,
        "p_apply_drop": 0.05,
        "throttle_rate": 900.0,
        "throttle_burst": 20,
    }
    clock = _RequestClock()
    sim = make_simulator(items=300, regions=("cn-north-1",), seed=3, monotonic=clock, **faults)
    clock.sim = sim
    async with sim:
        manifest, ledger = tmp_path / "cbr.csv", tmp_path / "ledger.jsonl"
        rows = write_estate_manifest(sim.state, manifest, destinations=2, service="cbr")
        assert rows > 300

        result = await _run(sim, manifest, ledger)

        assert result.exit_code == ExitCode.OK
        results = [r for r in iter_records(ledger) if r["event"] == "result"]
        assert len(results) == rows
        assert all("checkpoint_item_id" not in r for r in results)
        assert all(r["status"] in _SUCCESS for r in results)
        wanted = {
            (r["backup_id"], r["destination_region"]): r
            for r in cbr_rows(sim.state, destinations=2)
        }
        for r in results:
            pair = (r["backup_id"], r["destination_region"])
            assert r["destination_vault_id"] == wanted[pair]["destination_vault_id"]
            live = sim.state.latest_record(*pair)
            assert live is not None
            assert r["replication_record_id"] == live.id, pair
        made = sim.counters.replications
        assert max(made.values()) == 1, "a replica was created twice"
        answered = {
            status: n
            for (route, status), n in sim.counters.requests.items()
            if route == CBR_REPLICATE
        }
        assert answered["503"] > 20
        assert answered["429"] > 5
        assert answered["dropped"] > 5
        started = next(r for r in iter_records(ledger) if r["event"] == "run_started")
        assert started["settings"]["service"] == "cbr"


class _RequestClock:
    """The simulator's throttling clock: 1 ms per CBR replicate request answered, so that the
    share of 429s depends on the request count, not on the machine's speed."""

    def __init__(self) -> None:
        self.sim: Simulator | None = None

    def __call__(self) -> float:
        if self.sim is None:
            return 0.0
        requests = self.sim.counters.requests.items()
        return 0.001 * sum(n for (route, _), n in requests if route == CBR_REPLICATE)


# -- bad input, before anything is sent --------------------------------------------------------


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


_BACKUP = "0b7d9a8c-1111-4222-8333-944455556666"
_PROJECT = "a" * 32
_VAULT = "5e2c1f0a-aaaa-4bbb-8ccc-dddddddddddd"


def test_a_csbs_manifest_is_refused_by_a_cbr_plan(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.csv",
        ["checkpoint_item_id", "destination_region", "destination_project_id"],
        [[_BACKUP, "cn-east-2", _PROJECT]],
    )
    with pytest.raises(ManifestError) as caught:
        Plan.from_manifest(path, default_project_id=_PROJECT, service="cbr")
    assert "--service csbs" in str(caught.value)
    assert "backup_id, destination_region, destination_project_id, destination_vault_id" in str(
        caught.value
    )


def test_a_cbr_manifest_is_refused_by_a_csbs_plan(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.csv",
        ["backup_id", "destination_region", "destination_project_id", "destination_vault_id"],
        [[_BACKUP, "cn-east-2", _PROJECT, _VAULT]],
    )
    with pytest.raises(ManifestError) as caught:
        Plan.from_manifest(path, default_project_id=_PROJECT)
    assert "--service cbr" in str(caught.value)


def test_a_cbr_jsonl_with_csbs_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        f'{{"checkpoint_item_id": "{_BACKUP}", "destination_region": "cn-east-2", '
        f'"destination_project_id": "{_PROJECT}"}}\n'
    )
    with pytest.raises(ManifestError) as caught:
        Plan.from_manifest(path, default_project_id=_PROJECT, service="cbr")
    assert "checkpoint_item_id" in str(caught.value)


def test_a_missing_vault_column_names_the_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.csv",
        ["backup_id", "destination_region", "destination_project_id"],
        [[_BACKUP, "cn-east-2", _PROJECT]],
    )
    with pytest.raises(ManifestError) as caught:
        Plan.from_manifest(path, default_project_id=_PROJECT, service="cbr")
    assert "destination_vault_id" in str(caught.value)


def test_bad_vault_ids_are_rejected_rows_naming_line_and_field(tmp_path: Path) -> None:
    header = ["backup_id", "destination_region", "destination_project_id", "destination_vault_id"]
    path = _write(
        tmp_path / "m.csv",
        header,
        [
            [_BACKUP, "cn-east-2", _PROJECT, "vault-1"],
            [_BACKUP.replace("0b", "1b"), "cn-east-2", _PROJECT, ""],
            ["not-a-uuid", "cn-east-2", _PROJECT, _VAULT],
            [_BACKUP.replace("0b", "2b"), "cn-east-2", _PROJECT, _VAULT.upper()],
        ],
    )
    plan = Plan.from_manifest(path, default_project_id=_PROJECT, service="cbr")
    problems = [(r.line, r.field) for r in plan.rejected]
    assert problems == [(2, "destination_vault_id"), (3, "destination_vault_id"), (4, "backup_id")]
    assert "'vault-1' is not a vault id" in plan.rejected[0].reason
    tasks = [w.task for w in plan.work()]
    assert [t.destination_vault_id for t in tasks] == [_VAULT]


def test_two_vaults_for_one_pair_are_a_conflict(tmp_path: Path) -> None:
    header = ["backup_id", "destination_region", "destination_project_id", "destination_vault_id"]
    other = _VAULT.replace("dddd", "eeee")
    path = _write(
        tmp_path / "m.csv",
        header,
        [[_BACKUP, "cn-east-2", _PROJECT, _VAULT], [_BACKUP, "cn-east-2", _PROJECT, other]],
    )
    plan = Plan.from_manifest(path, default_project_id=_PROJECT, service="cbr")
    assert len(plan.conflicts) == 1
    assert not list(plan.work())


# -- resume keeps the ledger's service -----------------------------------------------------------


def test_resume_with_another_service_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    manifest = _write(tmp_path / "m.csv", list(CBR_MANIFEST_COLUMNS), [])
    ledger.write_text(
        '{"v": 1, "event": "run_started", "ts": "2026-01-01T00:00:00Z", "run_id": "r", '
        f'"manifest": "{manifest}", "settings": {{"service": "cbr"}}}}\n'
    )
    code = cli.main(["resume", "--ledger", str(ledger), "--service", "csbs"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--service cbr" in err
    assert "Traceback" not in err


def test_an_old_csbs_ledger_cannot_be_resumed_as_cbr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    manifest = _write(tmp_path / "m.csv", ["checkpoint_item_id"], [])
    ledger.write_text(
        '{"v": 1, "event": "run_started", "ts": "2026-01-01T00:00:00Z", "run_id": "r", '
        f'"manifest": "{manifest}", "settings": {{}}}}\n'
    )
    assert cli.main(["resume", "--ledger", str(ledger), "--service", "cbr"]) == ExitCode.USAGE
    assert "--service csbs" in capsys.readouterr().err


def test_cbr_results_fold_like_csbs_ones(tmp_path: Path) -> None:
    """History and report read ``backup_id`` lines: a second plan skips what is done."""
    from orchestrator.ledger.history import History

    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(
        '{"v": 1, "event": "result", "ts": "2026-01-01T00:00:00Z", "run_id": "r", '
        f'"backup_id": "{_BACKUP}", "project_id": "{_PROJECT}", "destination_region": '
        f'"cn-east-2", "destination_project_id": "{_PROJECT}", "destination_vault_id": '
        f'"{_VAULT}", "status": "replicated", "replication_record_id": "x"}}\n'
    )
    history = History.load(ledger)
    assert history.status((_PROJECT, _BACKUP, "cn-east-2")) == "replicated"
    path = _write(
        tmp_path / "m.csv",
        ["backup_id", "destination_region", "destination_project_id", "destination_vault_id"],
        [[_BACKUP, "cn-east-2", _PROJECT, _VAULT]],
    )
    plan = Plan.from_manifest(path, default_project_id=_PROJECT, history=history, service="cbr")
    assert plan.totals.already_done == 1
    assert Counter(w.task.checkpoint_item_id for w in plan.work()) == Counter()


# -- track (operation logs), report, metrics over a CBR ledger ---------------------------------


@pytest.mark.anyio
async def test_track_follows_cbr_copies_through_operation_logs(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    from orchestrator.engine.copies import pending_copies
    from orchestrator.engine.track import TrackSettings, track_ledger
    from orchestrator.insight.report import build_report
    from orchestrator.ledger.history import History

    async with make_simulator(items=30, copy_wait_s=5, copy_duration_s=30, seed=4) as sim:
        manifest, ledger = tmp_path / "cbr.csv", tmp_path / "ledger.jsonl"
        write_estate_manifest(sim.state, manifest, limit=5, service="cbr")
        assert (await _run(sim, manifest, ledger)).exit_code == ExitCode.OK
        pending = pending_copies(ledger)
        assert len(pending) == 5
        assert all(p.destination_vault_id for p in pending)

        async def sleep(seconds: float) -> None:
            sim.advance(seconds)

        before = dict(sim.counters.requests)
        result = await track_ledger(
            ledger, lambda: _client(sim), TrackSettings(interval_s=10), sleep=sleep
        )
        asked = {
            route
            for (route, _), n in sim.counters.requests.items()
            if n > before.get((route, _), 0)
        }

    assert (result.success, result.failed, result.missing) == (5, 0, 0)
    assert OP_LOGS in asked
    copies = [r for r in iter_records(ledger) if r["event"] == "copy_status"]
    assert Counter(r["copy_status"] for r in copies) == {
        "waiting_copy": 5,
        "copying": 5,
        "success": 5,
    }
    assert all("backup_id" in r and r["destination_vault_id"] for r in copies)
    history = History.load(ledger)
    keys = [(p.project_id, p.checkpoint_item_id, p.destination_region) for p in pending]
    assert {history.copy_status(key) for key in keys} == {"success"}
    report = build_report(iter_records(ledger), run="last")
    assert report.totals["replicated"] == 5


def test_track_takes_the_ledgers_service_and_refuses_another(tmp_path: Path) -> None:
    from orchestrator.cli.tracking import ledger_service
    from orchestrator.errors import ConfigError

    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(
        '{"v": 1, "event": "run_started", "ts": "2026-01-01T00:00:00Z", "run_id": "r", '
        '"settings": {"service": "cbr"}}\n'
    )
    assert ledger_service(ledger, None) == "cbr"
    assert ledger_service(ledger, "cbr") == "cbr"
    with pytest.raises(ConfigError, match="--service cbr"):
        ledger_service(ledger, "csbs")


# -- discover --service cbr ------------------------------------------------------------------


@pytest.mark.anyio
async def test_discover_cbr_lists_backups_and_names_destination_vaults(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    from orchestrator.discovery.discover import discover
    from orchestrator.discovery.manifest_out import write_manifest
    from orchestrator.discovery.rules import DiscoverConfig, Source

    async with make_simulator(items=60, seed=9) as sim:
        project = sim.state.projects[0]
        first, second = sim.state.capabilities()[project.region][:2]
        dest_one, dest_two = (sim.state.destination_projects[r] for r in (first, second))
        own_vault = vault_id(dest_two, second)
        config = DiscoverConfig.from_config(
            {
                "discover": {
                    "rules": [
                        {
                            "to": [
                                {"region": first, "project_id": dest_one},
                                {"region": second, "project_id": dest_two, "vault_id": own_vault},
                            ]
                        }
                    ],
                    "cbr": {"destination_vaults": {first: vault_id(dest_one, first)}},
                }
            },
            default_source=Source(project.id, project.region),
            service="cbr",
        )
        async with _client(sim) as client:
            await client.replicate(_fresh(sim, 1)[0])  # a copy under way hides its pair
            found = await discover(client, config)
        available = [i for i in sim.state.items_of(project.id) if i.status == "available"]
        blocked = {
            (r.item.id, r.destination_region)
            for i in available
            for r in sim.state.records_of(i)
            if r.blocks_duplicate(sim.state.now())
        }
        expected = {(i.id, r) for i in available for r in (first, second)} - blocked
        assert {(t.checkpoint_item_id, t.destination_region) for t in found.tasks} == expected
        assert blocked, "the estate's history should hide some pairs"
        vaults = {t.destination_region: t.destination_vault_id for t in found.tasks}
        assert vaults == {first: vault_id(dest_one, first), second: own_vault}

        manifest = tmp_path / "discovered.csv"
        assert write_manifest(found.tasks, manifest, service="cbr") == len(expected)
        plan = Plan.from_manifest(manifest, default_project_id=None, service="cbr")
        assert plan.totals.to_send == len(expected)


def test_discover_cbr_needs_a_vault_per_destination_region() -> None:
    from orchestrator.discovery.rules import DiscoverConfig, Source
    from orchestrator.errors import ConfigError

    rules = {"rules": [{"to": [{"region": "cn-east-2", "project_id": _PROJECT}]}]}
    source = Source(_PROJECT, "cn-north-1")
    config = DiscoverConfig.from_config({"discover": rules}, default_source=source, service="cbr")
    with pytest.raises(ConfigError, match=r"destination_vaults = \{ \"cn-east-2\""):
        config.check()
    bad = {"discover": {**rules, "cbr": {"destination_vaults": {"cn-east-2": "vault-1"}}}}
    with pytest.raises(ConfigError, match="a vault id"):
        DiscoverConfig.from_config(bad, default_source=source, service="cbr")
    with pytest.raises(ConfigError, match="--service cbr"):
        DiscoverConfig.from_config(
            {"discover": {**rules, "cbr": {"destination_vaults": {"cn-east-2": _VAULT}}}},
            default_source=source,
        )


def test_the_cbr_demo_manifest_runs_against_the_embedded_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make demo-cbr``: configs/example-cbr-manifest.csv is the estate of --simulate."""
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_SERVICE", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    manifest = Path(__file__).parents[2] / "configs" / "example-cbr-manifest.csv"
    ledger = tmp_path / "demo.jsonl"
    argv = ["run", "--simulate", "--service", "cbr", "--manifest", str(manifest)]
    assert cli.main([*argv, "--ledger", str(ledger), "--no-progress"]) == ExitCode.OK
    results = [r for r in iter_records(ledger) if r["event"] == "result"]
    assert len(results) == 60
    assert {r["status"] for r in results} <= _SUCCESS


def test_the_failed_pairs_of_a_cbr_ledger_make_a_cbr_manifest(tmp_path: Path) -> None:
    from orchestrator.insight.failed_manifest import write_failed_manifest

    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(
        '{"v": 1, "event": "run_started", "ts": "2026-01-01T00:00:00Z", "run_id": "r", '
        '"settings": {"service": "cbr"}}\n'
        '{"v": 1, "event": "result", "ts": "2026-01-01T00:00:01Z", "run_id": "r", '
        f'"backup_id": "{_BACKUP}", "project_id": "{_PROJECT}", "source_region": "cn-north-1", '
        f'"destination_region": "cn-east-2", "destination_project_id": "{_PROJECT}", '
        f'"destination_vault_id": "{_VAULT}", "status": "failed", "error_code": '
        '"BackupService.1012"}\n'
    )
    out = tmp_path / "again.csv"
    assert write_failed_manifest(iter_records(ledger), out) == 1
    assert out.read_text().splitlines()[0].startswith("backup_id,")
    plan = Plan.from_manifest(out, default_project_id=None, service="cbr")
    assert [w.task.destination_vault_id for w in plan.work()] == [_VAULT]


@pytest.mark.anyio
async def test_schedule_runs_cbr_discovery_night_after_night(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    import io
    from datetime import UTC, datetime

    from orchestrator.cli.nightly import Nightly
    from orchestrator.discovery.rules import Destination, DiscoverConfig, Rule, Source
    from orchestrator.scheduling.firing import Firing
    from orchestrator.service.connect import Connection

    async with make_simulator(items=120, seed=6) as sim:
        project = sim.state.projects[0]
        region = sim.state.capabilities()[project.region][0]
        dest = sim.state.destination_projects[region]
        config = DiscoverConfig(
            sources=(Source(project.id, project.region),),
            rules=(Rule((Destination(region, dest),)),),
            service="cbr",
            vaults={region: vault_id(dest, region)},
        )
        settings = RunSettings.of(endpoint=sim.base_url, service="cbr", **FAST)
        conn = Connection(settings, AkSkSigner(sim.config.ak, Secret(sim.config.sk)))
        nightly = Nightly(conn, lambda _now: config, state_dir=tmp_path, keep=5, out=io.StringIO())

        def night(day: int) -> Firing:
            moment = datetime(2026, 3, day, 1, 30, tzinfo=UTC)
            return Firing(moment, moment)

        assert await nightly(night(28)) == ExitCode.OK
        sent = sum(sim.counters.replications.values())
        assert sent > 10
        assert await nightly(night(29)) == ExitCode.OK  # every pair now has a copy under way
        assert sum(sim.counters.replications.values()) == sent
        # the second night's retention gzipped the first night's ledger: read as it was
        first = tmp_path / "ledger-20260328T0130Z.jsonl.gz"
        results = [r for r in iter_records(first) if r["event"] == "result"]
        assert all(r["destination_vault_id"] == vault_id(dest, region) for r in results)
