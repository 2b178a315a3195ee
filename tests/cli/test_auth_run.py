"""Credentials over a whole run: a token that expires mid-run costs exactly one refresh; a
credential revoked mid-run, or a key locked by bad signatures, stops the run (exit 7) after
the requests already in flight instead of retrying into the lockout.

(Refused credentials at the start of a run are covered in test_cli_run.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import AuthError
from orchestrator.exitcodes import ExitCode
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import IamPasswordToken
from orchestrator.simulator import Simulator
from orchestrator.simulator.app import TOKENS
from orchestrator.simulator.csbs import CAPABILITIES, REPLICATE
from orchestrator.simulator.sample import MANIFEST_COLUMNS, estate_rows
from tests.conftest import MakeSimulator
from tests.helpers.runkit import final_results, run_in_process, until

pytestmark = pytest.mark.anyio

CONCURRENCY = 8


def _one_project_manifest(sim: Simulator, path: Path) -> int:
    """Rows of the first source project only: IAM tokens are per project."""
    project = sim.state.projects[0].id
    rows = [r for r in estate_rows(sim.state, destinations=3) if r["project_id"] == project]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


async def _when_accepted(sim: Simulator, count: int) -> None:
    await until(lambda: sim.counters.requests_for(REPLICATE, 200) >= count)


async def test_a_token_expiring_mid_run_costs_one_refresh(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=120, auth="token", token_ttl_s=3600, latency_s=0.002) as sim:
        pairs = _one_project_manifest(sim, manifest)
        auth = IamPasswordToken(
            sim.base_url, sim.config.user, Secret(sim.config.password), sim.config.domain
        )

        async def expire_tokens() -> None:
            await _when_accepted(sim, 10)
            sim.advance(3601)  # every token issued so far is now expired

        async with anyio.create_task_group() as tg:
            tg.start_soon(expire_tokens)
            result = await run_in_process(sim, manifest, ledger, auth=auth, concurrency=CONCURRENCY)

        assert result.exit_code == ExitCode.OK
        assert sim.counters.requests_for(TOKENS, 201) == 2  # the first token, one refresh
        assert 1 <= sim.counters.requests_for(REPLICATE, 401) <= CONCURRENCY
        assert len(final_results(ledger)) == pairs
        assert result.stats.finished == pairs


async def test_a_key_revoked_mid_run_stops_it_with_exit_7(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=200, latency_s=0.002) as sim:
        pairs = _one_project_manifest(sim, manifest)

        async def revoke() -> None:
            await _when_accepted(sim, 10)
            sim.auth.revoke_key(sim.config.ak)

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke)
            result = await run_in_process(sim, manifest, ledger, concurrency=CONCURRENCY)

        refused = sim.counters.requests_for(REPLICATE, 401)
    assert result.exit_code == ExitCode.AUTH
    assert result.stats.stop_reason == "auth"
    assert result.stats.auth_error
    assert "disabled" in result.stats.auth_error
    # Only requests already in flight when the key went are refused: no retry loop.
    assert 1 <= refused <= CONCURRENCY
    # Retryable once the key is fixed: the refused ones, and those whose attempt line was
    # written ahead of a request that the stop kept from going out.
    gave_up = [r for r in final_results(ledger).values() if r["status"] == "gave_up"]
    assert result.stats.counts["gave_up"] == len(gave_up)
    assert sum(1 for r in gave_up if r["http_status"] == 401) == refused
    assert all(r["attempts"] == 0 for r in gave_up if r["http_status"] is None)
    assert result.stats.finished < pairs


async def test_a_locked_key_stops_the_run_at_the_first_refusals(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """Five bad signatures (someone else's, say) lock the real key for 300 s. The run then
    sees only refusals: it stops after its few credential probes, exit 7, and a run after
    the lockout succeeds."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=60) as sim:
        pairs = _one_project_manifest(sim, manifest)
        project = sim.state.projects[0]
        wrong = AkSkSigner(sim.config.ak, Secret("not-the-secret-key"))
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), wrong) as client:
            for _ in range(sim.config.lockout_failures):
                with pytest.raises(AuthError):
                    await client.capabilities(project.id, region=project.region)

        refused_before = sim.counters.requests_for(CAPABILITIES, 401)
        with pytest.raises(AuthError, match="locked"):
            await run_in_process(sim, manifest, ledger)

        # The preflight's one request, no replication at all.
        assert sim.counters.requests_for(CAPABILITIES, 401) == refused_before + 1
        assert sim.counters.requests_for(REPLICATE, 401) == 0
        assert sim.counters.requests_for(REPLICATE, 200) == 0

        sim.advance(sim.config.lockout_s + 1)
        later = await run_in_process(sim, manifest, ledger)
        assert later.exit_code == ExitCode.OK
        assert len(final_results(ledger)) == pairs
        statuses = {f["status"] for f in final_results(ledger).values()}
        assert statuses <= {"replicated", "already_replicated"}
