"""Helpers for whole-run tests (resume, crash, shutdown, storm, auth): run a job against a
simulator, in this process or as a real ``python -m orchestrator`` subprocess, and read the
ledger back per pair.

Import as ``from runkit import ...`` (tests/ is on ``sys.path`` as pytest's rootdir).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from orchestrator.config.settings import RunSettings
from orchestrator.engine.job import run_job
from orchestrator.engine.job_spec import SNAPSHOT_AFTER_BYTES, SNAPSHOT_CHECK_S, JobResult, JobSpec
from orchestrator.engine.pool_types import Replicator
from orchestrator.ledger.file import iter_records
from orchestrator.models import PairKey, ReplicationTask
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Authenticator, Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.simulator import Simulator
from orchestrator.simulator.records import Item
from orchestrator.simulator.sample import write_estate_manifest

__all__ = [
    "FAST",
    "SimProcess",
    "client_factory",
    "estate_manifest",
    "final_results",
    "fresh_items",
    "ledger_lines",
    "results_by_pair",
    "run_cli",
    "run_in_process",
    "start_cli",
    "task_for",
    "until",
    "wait_for",
]

#: Settings that keep whole-run tests fast: millisecond backoff, a short grace period.
FAST: Mapping[str, Any] = {
    "retry_base": 0.001,
    "retry_cap": 0.01,
    "grace_period": 5.0,
    "request_timeout": 10.0,
}

# -- in process ------------------------------------------------------------------------------


def fresh_items(
    sim: Simulator, count: int | None = None, *, project: int = 0, status: str = "available"
) -> list[Item]:
    """Items of one project with this status and no replication history (the first
    ``count`` of them, or all)."""
    project_id = sim.state.projects[project].id
    found = [
        item
        for item in sim.state.items_of(project_id)
        if item.status == status and not sim.state.records_of(item)
    ]
    return found if count is None else found[:count]


def task_for(sim: Simulator, item: Item, *, destination: int = 0, **kw: Any) -> ReplicationTask:
    """The task replicating ``item`` to the ``destination``-th region its region can reach."""
    region = sim.state.capabilities()[item.region][destination]
    return ReplicationTask(
        checkpoint_item_id=item.id,
        project_id=item.project_id,
        destination_region=region,
        destination_project_id=sim.state.destination_projects[region],
        source_region=item.region,
        **kw,
    )


def estate_manifest(sim: Simulator, path: Path, *, destinations: int = 1) -> int:
    """A CSV manifest of every available item of ``sim``'s estate; returns its row count."""
    return write_estate_manifest(sim.state, path, destinations=destinations)


def client_factory(
    sim: Simulator, auth: Authenticator | None = None
) -> Callable[[], AbstractAsyncContextManager[Replicator]]:
    signer = auth or AkSkSigner(sim.config.ak, Secret(sim.config.sk))
    return lambda: CsbsClient(ClientSettings(endpoint=sim.base_url), signer)


async def run_in_process(
    sim: Simulator,
    manifest: Path,
    ledger: Path,
    *,
    retry_failed: bool = False,
    auth: Authenticator | None = None,
    factory: Callable[[], AbstractAsyncContextManager[Replicator]] | None = None,
    snapshot_after_bytes: int = SNAPSHOT_AFTER_BYTES,
    snapshot_check_s: float = SNAPSHOT_CHECK_S,
    **settings: Any,
) -> JobResult:
    """One ``run`` through :func:`run_job` (no signal handling), with :data:`FAST` settings."""
    spec = JobSpec(
        ledger=ledger,
        settings=RunSettings.of(endpoint=sim.base_url, **{**FAST, **settings}),
        manifest=manifest,
        retry_failed=retry_failed,
        handle_signals=False,
        snapshot_after_bytes=snapshot_after_bytes,
        snapshot_check_s=snapshot_check_s,
    )
    return await run_job(spec, factory or client_factory(sim, auth))


# -- the ledger, per pair --------------------------------------------------------------------


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    return list(iter_records(path))


def _key(line: Mapping[str, Any]) -> PairKey:
    return (line["project_id"], line["checkpoint_item_id"], line["destination_region"])


def results_by_pair(path: Path) -> dict[PairKey, list[dict[str, Any]]]:
    """Every non-rejected ``result`` line of every run, per pair, in ledger order."""
    found: dict[PairKey, list[dict[str, Any]]] = defaultdict(list)
    for line in iter_records(path):
        if line["event"] == "result" and line["status"] != "rejected":
            found[_key(line)].append(line)
    return dict(found)


def final_results(path: Path) -> dict[PairKey, dict[str, Any]]:
    """The last result of each pair."""
    return {key: lines[-1] for key, lines in results_by_pair(path).items()}


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every millisecond (simulator counters have no event to wait on)."""
    while True:
        if condition():
            return
        await anyio.sleep(0.001)


def wait_for(condition: Callable[[], bool], *, timeout: float = 30.0, poll: float = 0.001) -> None:
    """Poll ``condition`` every millisecond until it holds; fail after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)


# -- subprocesses ----------------------------------------------------------------------------

_PYTHON = sys.executable
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class SimProcess:
    """``python -m orchestrator simulate`` in its own process; :meth:`start` reads its
    start-up line (base_url, projects, ak, sk, ...)."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @classmethod
    @contextmanager
    def start(cls, *args: str) -> Iterator[SimProcess]:
        # stderr goes to a file: a pipe nobody reads fills up (64 KiB of logged errors, say)
        # and then blocks the simulator mid-write, which looks like a hung service.
        with tempfile.TemporaryFile("w+") as errors:
            proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [_PYTHON, "-m", "orchestrator", "simulate", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=_REPO,
            )
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line:
                    proc.wait(timeout=10)
                    errors.seek(0)
                    raise AssertionError(f"the simulator did not start: {errors.read()}")
                yield cls(proc, json.loads(line))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    def _call(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            self.base_url + path, data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    def counters(self) -> dict[str, Any]:
        return dict(self._call("/_sim/counters"))

    def set_faults(self, **knobs: Any) -> None:
        self._call("/_sim/faults", knobs)

    def replication_records(self, project_id: str) -> list[dict[str, Any]]:
        """All replication records of a project, newest first (the simulator's truth).

        Asked through the real, signed API with the simulator's own key."""

        async def fetch() -> list[dict[str, Any]]:
            signer = AkSkSigner(self.info["ak"], Secret(self.info["sk"]))
            async with CsbsClient(ClientSettings(endpoint=self.base_url), signer) as client:
                return await client.replication_records(project_id)

        return anyio.run(fetch)

    def live_records(self) -> dict[tuple[str, str], str]:
        """(item, destination region) -> the id of its newest replication that has not failed:
        the record a replicated pair must carry."""
        live: dict[tuple[str, str], str] = {}
        for project in self.info["projects"]:
            for record in self.replication_records(project["id"]):
                pair = (record["source_checkpoint_item_id"], record["destination_region"])
                if record["status"] != "fail" and pair not in live:
                    live[pair] = record["id"]
        return live

    def replicate_requests(self) -> dict[str, int]:
        """Replicate POSTs the simulator answered, by status."""
        requests = self.counters()["requests"]
        route = next((r for r in requests if r.endswith("/replicate")), None)
        return dict(requests[route]) if route else {}


def start_cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m orchestrator ARGS`` as a subprocess (stdout/stderr captured)."""
    return subprocess.Popen(  # noqa: S603 - our own module
        [_PYTHON, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=_REPO,
    )


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    proc = start_cli(args, env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
