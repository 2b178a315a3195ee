"""Bad networks between the tool and the simulator (a TCP proxy, :mod:`netproxy`) with the
simulator's own 503s on: the service refuses connections, swallows requests, cuts answers
mid-body or trickles them, for a short while, for long, or for good; DNS fails.

Every case checks the promises of ``docs/network-faults.md``: a short outage is ridden out;
a long one ends the run resumably (exit 4) and the next run finishes the job; no pair is
lost, none is created twice at the service, every record id in the ledger is the service's.

Timings are scaled down (timeouts of a fraction of a second, a retry time of seconds), so
the outages are real but short; ``CSBS_SLOW_TESTS=1`` runs longer ones.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from orchestrator.engine.job_spec import JobResult
from orchestrator.engine.pool_types import Replicator
from orchestrator.errors import ServiceUnreachableError, TransportError
from orchestrator.exitcodes import ExitCode
from orchestrator.models import FINAL_SUCCESS, ReplicationTask
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient, FoundRecord
from orchestrator.service.settings import ClientSettings, Timeouts
from orchestrator.simulator import ManualClock, Simulator, SimulatorConfig
from orchestrator.simulator.csbs import GET_ITEM, REPLICATE
from tests.conftest import MakeSimulator
from tests.helpers.netproxy import Mode, NetProxy
from tests.helpers.runkit import (
    estate_manifest,
    final_results,
    results_by_pair,
    run_in_process,
    until,
)

pytestmark = pytest.mark.anyio

SLOW = os.environ.get("CSBS_SLOW_TESTS") == "1"
#: Short network timeouts: a swallowed request costs half a second, not a minute.
TIMEOUTS = Timeouts(total_s=0.5, connect_s=0.2, read_s=0.3)
#: Retries close together and many of them, so that only the retry time ends a pair.
PATIENT: dict[str, Any] = {"max_attempts": 10_000, "retry_cap": 0.05, "concurrency": 16}
SHORT_OUTAGE_S = 1.0 if SLOW else 0.3
RIDE_OUT_S = 5.0  # the retry time of a run that must ride a short outage out
GIVE_UP_S = 1.0  # the retry time of a run that must stop on a long one


def _posts(sim: Simulator) -> int:
    return _answered(sim, REPLICATE)


def _answered(sim: Simulator, route: str) -> int:
    return sum(n for (seen, _), n in sim.counters.requests.items() if seen == route)


class CountingClient(CsbsClient):
    """The real client, counting the replication requests the network made fail and the
    look-ups that reconciled them (both are retries of a pair: a resend, or a look-up
    instead of a resend when the request may have been applied)."""

    failed: Counter[str]

    def __init__(self, settings: ClientSettings, signer: AkSkSigner, failed: Counter[str]) -> None:
        super().__init__(settings, signer)
        self.failed = failed

    async def replicate(self, task: ReplicationTask) -> str:
        try:
            return await super().replicate(task)
        except TransportError as exc:
            self.failed["maybe applied" if exc.maybe_applied else "not sent"] += 1
            raise

    async def find_replication_record(self, task: ReplicationTask) -> FoundRecord | None:
        self.failed["looked up"] += 1
        return await super().find_replication_record(task)


def _factory(
    sim: Simulator,
    endpoint: str,
    resolver: AbstractResolver | None = None,
    failed: Counter[str] | None = None,
    ca_file: str | None = None,
) -> Callable[[], AbstractAsyncContextManager[Replicator]]:
    signer = AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    settings = ClientSettings(
        endpoint=endpoint, timeouts=TIMEOUTS, resolver=resolver, ca_file=ca_file
    )
    counts: Counter[str] = Counter() if failed is None else failed
    return lambda: CountingClient(settings, signer, counts)


def _port(sim: Simulator) -> int:
    port = yarl.URL(sim.base_url).port
    assert port is not None
    return port


def check_against_the_service(sim: Simulator, ledger: Path, pairs: int) -> None:
    """Nothing lost, nothing created twice, every record id the service's own."""
    final = final_results(ledger)
    assert len(final) == pairs
    # Counted by the simulator as it creates them (the estate's seeded history aside).
    assert max(sim.counters.replications.values(), default=0) <= 1, "a replica created twice"
    for key, lines in results_by_pair(ledger).items():
        successes = [line for line in lines if line["status"] in FINAL_SUCCESS]
        assert len(successes) == 1, (key, [line["status"] for line in lines])
        _, item_id, region = key
        live = sim.state.latest_record(item_id, region)
        assert live is not None, key
        got = successes[0]["replication_record_id"]
        # After a duplicate refusal the id is looked up, best effort: on a network that still
        # fails, "already_replicated" may come without it (never with a wrong one).
        if got is not None or successes[0]["status"] != "already_replicated":
            assert got == live.id, key


async def _outage(
    sim: Simulator, proxy: NetProxy, mode: Mode, *, after_posts: int, lasts: float | None
) -> None:
    """Break the network once the run is under way; mend it after ``lasts`` s (None: never)."""
    await until(lambda: _posts(sim) >= after_posts)
    await proxy.set_mode(mode)
    if lasts is not None:
        await anyio.sleep(lasts)  # real time: the client's timeouts run on it
        await proxy.set_mode("pass")


async def _run_with_outage(
    sim: Simulator,
    proxy: NetProxy,
    tmp_path: Path,
    mode: Mode,
    *,
    lasts: float | None,
    retry_time: float,
    failed: Counter[str] | None = None,
) -> JobResult:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    result: JobResult | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _outage(sim, proxy, mode, after_posts=5, lasts=lasts))
        result = await run_in_process(
            sim,
            manifest,
            ledger,
            factory=_factory(sim, proxy.url, failed=failed),
            retry_time=retry_time,
            **PATIENT,
        )
        tg.cancel_scope.cancel()
    assert result is not None
    return result


MODES: list[Mode] = ["refuse", "blackhole", "cut", "trickle"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_short_outage_is_ridden_out(
    make_simulator: MakeSimulator, tmp_path: Path, mode: Mode
) -> None:
    async with make_simulator(items=40, p503=0.05) as sim, NetProxy(_port(sim)) as proxy:
        proxy.trickle_delay_s = 0.05  # an answer takes longer than the request timeout
        pairs = estate_manifest(sim, tmp_path / "m.csv")
        failed: Counter[str] = Counter()
        result = await _run_with_outage(
            sim, proxy, tmp_path, mode, lasts=SHORT_OUTAGE_S, retry_time=RIDE_OUT_S, failed=failed
        )
        assert result.exit_code == ExitCode.OK, result.stats
        check_against_the_service(sim, tmp_path / "ledger.jsonl", pairs)
        # The outage was felt: many replication requests got no answer.
        assert failed["not sent"] + failed["maybe applied"] >= 10, failed
        # Each was retried, and every pair finished: one that never left was sent again (a
        # retry counts when it is sent) ...
        assert result.stats.retries >= failed["not sent"], (result.stats.retries, failed)
        # ... one that may have been applied was looked up first, and a look-up that finds
        # the replica ends the pair without a resend (so without a retry).
        assert failed["looked up"] >= failed["maybe applied"], failed
        if mode != "refuse":
            # Requests that may have been applied were reconciled before any resend.
            assert _answered(sim, GET_ITEM) > 0


@pytest.mark.parametrize("mode", MODES)
async def test_an_outage_for_good_stops_resumably_and_the_next_run_finishes(
    make_simulator: MakeSimulator, tmp_path: Path, mode: Mode
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=40, p503=0.05) as sim, NetProxy(_port(sim)) as proxy:
        proxy.trickle_delay_s = 0.05
        pairs = estate_manifest(sim, manifest)
        stopped = await _run_with_outage(
            sim, proxy, tmp_path, mode, lasts=None, retry_time=GIVE_UP_S
        )
        assert stopped.exit_code == ExitCode.GAVE_UP, stopped.stats
        assert stopped.stats.counts["gave_up"] > 0

        await proxy.set_mode("pass")  # the service is back
        finished = await run_in_process(
            sim, manifest, ledger, factory=_factory(sim, proxy.url), **PATIENT
        )
        assert finished.exit_code == ExitCode.OK, finished.stats
        check_against_the_service(sim, ledger, pairs)


@pytest.mark.skipif(not SLOW, reason="set CSBS_SLOW_TESTS=1")
@pytest.mark.parametrize("mode", MODES)
async def test_a_long_outage_outlasting_the_retry_time_stops_then_resume_finishes(
    make_simulator: MakeSimulator, tmp_path: Path, mode: Mode
) -> None:
    """The outage ends, but only after every pair in flight has given up."""
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    async with make_simulator(items=200, p503=0.05) as sim, NetProxy(_port(sim)) as proxy:
        pairs = estate_manifest(sim, manifest)
        stopped = await _run_with_outage(
            sim, proxy, tmp_path, mode, lasts=3 * GIVE_UP_S, retry_time=GIVE_UP_S
        )
        assert stopped.exit_code in {ExitCode.OK, ExitCode.GAVE_UP}, stopped.stats
        # The outage may outlast the run (its end is then cancelled with the run): it is over.
        await proxy.set_mode("pass")
        finished = await run_in_process(
            sim, manifest, ledger, factory=_factory(sim, proxy.url), **PATIENT
        )
        assert finished.exit_code == ExitCode.OK, finished.stats
        check_against_the_service(sim, ledger, pairs)


# --- DNS ------------------------------------------------------------------------------------


NAME = "csbs.test"  # RFC 6761: never a real host; only FlakyResolver ever resolves it


class FlakyResolver(AbstractResolver):
    """Resolves :data:`NAME` to the loopback proxy, failing the first ``failures`` lookups
    (all of them with ``failures=None``). Never asks a real DNS server."""

    def __init__(self, port: int, failures: int | None) -> None:
        self._port = port
        self._failures = failures
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        if self._failures is None or self.lookups <= self._failures:
            raise OSError(socket.EAI_AGAIN, "Temporary failure in name resolution")
        assert host == NAME
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self._port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


def _tls_simulator(tmp_path: Path, **knobs: Any) -> tuple[Simulator, str]:
    """A simulator serving HTTPS under a certificate for :data:`NAME` from a private CA, and
    that CA's file (``--ca-file``): credentials never travel in clear text to a host name
    (plain http:// off loopback is refused before any lookup), so DNS is tested over TLS."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(context)
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    config = SimulatorConfig.from_knobs(**knobs)
    return Simulator(config, clock=ManualClock(), ssl_context=context), str(pem)


async def test_dns_failing_at_the_start_is_ridden_out(tmp_path: Path) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    unstarted, ca_file = _tls_simulator(tmp_path, items=20)
    async with unstarted as sim:
        assert sim.base_url.startswith("https://")
        pairs = estate_manifest(sim, manifest)
        # The preflight's GET is the run's first request: it waits and asks again (0.25 s,
        # then 0.5 s) while no connection can be made; the run's requests then use the
        # name it resolved (aiohttp caches it).
        resolver = FlakyResolver(_port(sim), failures=2)
        endpoint = f"https://{NAME}:{_port(sim)}"
        result = await run_in_process(
            sim,
            manifest,
            ledger,
            factory=_factory(sim, endpoint, resolver, ca_file=ca_file),
            retry_time=RIDE_OUT_S,
            **PATIENT,
        )
        assert result.exit_code == ExitCode.OK, result.stats
        assert resolver.lookups > 2
        check_against_the_service(sim, ledger, pairs)


async def test_dns_failing_for_good_stops_as_unreachable_and_sends_nothing(
    tmp_path: Path,
) -> None:
    manifest, ledger = tmp_path / "m.csv", tmp_path / "ledger.jsonl"
    unstarted, ca_file = _tls_simulator(tmp_path, items=20)
    async with unstarted as sim:
        estate_manifest(sim, manifest)
        resolver = FlakyResolver(0, None)
        endpoint = f"https://{NAME}:{_port(sim)}"
        # The preflight's GET finds no connection for --unreachable-after: the run stops
        # before anything is recorded or sent (the CLI maps this error to exit 4, GAVE_UP).
        with pytest.raises(ServiceUnreachableError, match=r"name resolution.*nothing was sent"):
            await run_in_process(
                sim,
                manifest,
                ledger,
                factory=_factory(sim, endpoint, resolver, ca_file=ca_file),
                retry_time=RIDE_OUT_S,
                unreachable_after=0.3,
                **PATIENT,
            )
        assert resolver.lookups > 0
        assert _posts(sim) == 0
        # Nothing was recorded, so the next run sends every pair without asking first.
        assert not ledger.exists() or not final_results(ledger)
