"""``kill -9`` a real ``run --service cbr`` at seeded points, then ``resume`` with no
``--service``: the ledger's run says CBR, every pair ends with one success carrying the record
id the simulator holds, and no backup was copied twice.

The simulator runs in its own process and answers 503s and cuts connections after applying
the request, so that some kills land on pairs whose outcome only a reconcile can tell.
"""

from __future__ import annotations

import random
from pathlib import Path

from orchestrator.exitcodes import ExitCode
from orchestrator.models import FINAL_SUCCESS
from orchestrator.simulator.cbr import SHOW_BACKUP
from tests.helpers.env import subprocess_env
from tests.helpers.runkit import SimProcess, ledger_lines, run_cli, start_cli, wait_for

_SUCCESS = {str(s) for s in FINAL_SUCCESS}
_ITEMS, _SEED, _KILLS = 80, 21, 6


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_repeatedly(sim: SimProcess, manifest: Path, ledger: Path) -> int:
    rng = random.Random(_SEED)
    config = ledger.with_name("fast.toml")
    config.write_text("[retry]\nbase_delay = 0.005\nmax_delay = 0.05\n")
    common = ["--ledger", str(ledger), "--log-format", "json", "--no-progress"]
    common += ["--concurrency", "8", "--config", str(config)]
    kills = 0
    for _ in range(_KILLS):
        if ledger.exists():
            args = ["resume", *common]  # no --service: the ledger's run says cbr
        else:
            args = ["run", "--service", "cbr", "--manifest", str(manifest), *common]
            args += ["--endpoint", sim.base_url]
        target = _lines(ledger) + rng.randint(1, 15)
        proc = start_cli(args, subprocess_env(sim))
        wait_for(lambda: _lines(ledger) >= target or proc.poll() is not None)  # noqa: B023
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=30)
    return kills


def test_kill_9_then_resume_a_cbr_run(tmp_path: Path) -> None:
    manifest, ledger = tmp_path / "cbr.csv", tmp_path / "ledger.jsonl"
    sim_args = ["--items", str(_ITEMS), "--seed", str(_SEED)]
    faults = ["--latency", "0.01", "--p503", "0.1", "--p-apply-drop", "0.05"]
    with SimProcess.start(*sim_args, *faults) as sim:
        made = run_cli(
            [
                "simulate",
                *sim_args,
                "--write-manifest",
                str(manifest),
                "--manifest-destinations",
                "2",
                "--manifest-service",
                "cbr",
            ],
            subprocess_env(sim),
        )
        assert made.returncode == 0, made.stderr
        pairs = sum(1 for _ in manifest.open()) - 1

        kills = _kill_repeatedly(sim, manifest, ledger)
        assert kills >= _KILLS // 2

        finish = run_cli(["resume", "--ledger", str(ledger), "--no-progress"], subprocess_env(sim))
        assert finish.returncode == ExitCode.OK, (finish.stdout, finish.stderr)

        lines = ledger_lines(ledger)
        assert {
            line["settings"]["service"] for line in lines if line["event"] == "run_started"
        } == {"cbr"}
        successes: dict[tuple[str, str], list[str]] = {}
        for line in lines:
            if line["event"] == "result" and line["status"] in _SUCCESS:
                assert "checkpoint_item_id" not in line
                key = (line["backup_id"], line["destination_region"])
                successes.setdefault(key, []).append(line["replication_record_id"])
        assert len(successes) == pairs
        live = sim.live_records()
        for key, record_ids in successes.items():
            assert record_ids == [live[key]], key
        counters = sim.counters()
        assert counters["replications"]["max_per_pair"] <= 1, "a backup was copied twice"
        # Reconciles and already-replicated lookups went through CBR's own API.
        assert sum(counters["requests"].get(SHOW_BACKUP, {}).values()) > 0
