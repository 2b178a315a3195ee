"""Nightly runs: discover -> run -> report per firing, against the simulator over HTTP.

The schedule runs on a simulated clock; the estate's own clock moves only when a test says
so. The point of most tests is what the service is asked: a second night over the same
estate sends nothing, new backups are the only thing the next night sends.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.cli.main import build_parser, main
from orchestrator.cli.nightly import Nightly, run_schedule
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Rule, Source
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import iter_records
from orchestrator.scheduling.firing import Firing
from orchestrator.scheduling.missed import MissedRunPolicy
from orchestrator.scheduling.state import LOCK_FILE_NAME, STATE_FILE_NAME, ScheduleState
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.connect import Connection
from orchestrator.simulator import Simulator
from orchestrator.simulator.csbs import REPLICATE
from tests.conftest import MakeSimulator

ROOT = Path(__file__).resolve().parents[2]
SOUTH1 = "cn-south-1"
EAST2 = "cn-east-2"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def connection(sim: Simulator) -> Connection:
    settings = RunSettings.of(endpoint=sim.base_url, max_attempts=20, retry_base=0.0, retry_cap=0.0)
    return Connection(settings, AkSkSigner(sim.config.ak, Secret(sim.config.sk)))


def estate_config(sim: Simulator) -> DiscoverConfig:
    """Every project's backups to cn-south-1; cn-north-1's manual ones to cn-east-2 too."""
    north1 = sim.state.projects[0]
    return DiscoverConfig(
        sources=tuple(Source(p.id, p.region) for p in sim.state.projects),
        rules=(
            Rule((Dest(SOUTH1, sim.state.destination_projects[SOUTH1]),)),
            Rule(
                (Dest(EAST2, sim.state.destination_projects[EAST2]),),
                source_project_id=north1.id,
                name="manualbk_*",
            ),
        ),
    )


def replicate_requests(sim: Simulator) -> int:
    return sum(n for (route, _), n in sim.counters.requests.items() if route == REPLICATE)


def last_run_finished(ledger: Path) -> dict[str, Any]:
    finished = [r for r in iter_records(ledger) if r.get("event") == "run_finished"]
    return finished[-1]


def names(directory: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in directory.glob(pattern))


def firing(text: str) -> Firing:
    return Firing(utc(text), utc(text))


# --------------------------------------------------------------------------- night after night


@pytest.mark.anyio
async def test_the_second_night_sends_nothing_and_new_backups_are_all_the_next_sends(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=900) as sim:
        out = io.StringIO()
        config = estate_config(sim)
        nightly = Nightly(
            connection(sim), lambda _now: config, state_dir=tmp_path, keep=10, out=out
        )

        assert await nightly(firing("2026-03-28 01:30")) == ExitCode.OK
        first = replicate_requests(sim)
        replicated = sim.counters.replications.total()
        assert first == replicated > 600  # one request per pair, no duplicates
        assert sim.counters.duplicates.total() == 0

        # Night 2: every pair is now being copied (the simulated clock has not moved).
        assert await nightly(firing("2026-03-29 01:00")) == ExitCode.OK
        assert replicate_requests(sim) == first
        night2 = tmp_path / "ledger-20260329T0100Z.jsonl"
        assert last_run_finished(night2)["requests"] == 0
        assert "0 pairs written" in out.getvalue().splitlines()[-3]

        # Night 3: the copies have finished: already replicated, still nothing to send.
        sim.advance(sim.config.copy_wait_s + sim.config.copy_duration_s + 1)
        assert await nightly(firing("2026-03-30 00:30")) == ExitCode.OK
        assert replicate_requests(sim) == first

        # Night 4: seven new backups in cn-north-4: those seven, to cn-south-1, and nothing else.
        new = sim.state.add_items(sim.state.projects[1].id, 7)
        assert await nightly(firing("2026-03-31 00:30")) == ExitCode.OK
        assert replicate_requests(sim) == first + 7
        sent = {item for (item, region), n in sim.counters.replications.items() if n}
        assert {i.id for i in new} <= sent
        assert all(sim.counters.replications[(i.id, SOUTH1)] == 1 for i in new)
        assert sim.counters.duplicates.total() == 0

    ledgers = names(tmp_path, "ledger-*.jsonl*")
    assert ledgers == [
        # retention gzips the closed ledgers worth it (the later nights sent nothing)
        "ledger-20260328T0130Z.jsonl.gz",
        "ledger-20260329T0100Z.jsonl",
        "ledger-20260330T0030Z.jsonl",
        "ledger-20260331T0030Z.jsonl",
    ]
    started = next(iter_records(tmp_path / ledgers[0]))
    assert started["event"] == "run_started"
    assert started["source"] == "discover"
    assert started["manifest"] is None


@pytest.mark.anyio
async def test_stop_before_a_firing_sends_nothing(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    async with make_simulator(items=50) as sim:
        config = estate_config(sim)
        out = io.StringIO()
        nightly = Nightly(connection(sim), lambda _: config, state_dir=tmp_path, keep=3, out=out)
        nightly.stop()
        assert await nightly(firing("2026-03-28 01:30")) == ExitCode.INTERRUPTED
        assert replicate_requests(sim) == 0
    assert names(tmp_path) == []
    assert "stopped before anything was sent" in out.getvalue()


# --------------------------------------------------------------------------- the schedule loop


class JumpingClock:
    """Sleeps jump straight to their deadline, but only once no firing holds the lock,
    so that simulated nights never race ahead of a running job."""

    def __init__(self, start: datetime, state_dir: Path) -> None:
        self.now = start
        self.state_dir = state_dir
        self.sleeps: list[datetime] = []

    def __call__(self) -> datetime:
        return self.now

    def idle(self) -> bool:
        path = self.state_dir / LOCK_FILE_NAME
        if not path.exists():
            return True
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    async def sleep_until(self, when: datetime) -> None:
        self.sleeps.append(when)
        with anyio.fail_after(10):
            while not self.idle():  # noqa: ASYNC110 - waits on a file lock, not on luck
                await anyio.sleep(0.002)
        self.now = max(self.now, when)
        await anyio.lowlevel.checkpoint()


def options(state_dir: Path, *, keep: int = 14, once: bool = False) -> ScheduleOptions:
    return ScheduleOptions("30 2 * * *", "Europe/Berlin", state_dir, keep, MissedRunPolicy(), once)


@pytest.mark.anyio
async def test_the_schedule_fires_across_dst_into_dated_ledgers_and_keeps_the_newest(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    clock = JumpingClock(utc("2026-03-27 12:00"), state_dir)
    out = io.StringIO()
    async with make_simulator(items=300) as sim:
        config = estate_config(sim)
        code = await run_schedule(
            connection(sim),
            lambda _now: config,
            options(state_dir, keep=2),
            out=out,
            clock=clock,
            sleep_until=clock.sleep_until,
            max_firings=3,
            handle_signals=False,
        )
        first_night = sim.counters.replications.total()
        assert replicate_requests(sim) == first_night > 0  # the later nights sent nothing
    assert code == ExitCode.OK
    # 02:30 Berlin: CET, then the spring-forward night (02:30 does not exist: 03:00 CEST).
    assert clock.sleeps[:3] == [
        utc("2026-03-28 01:30"),
        utc("2026-03-29 01:00"),
        utc("2026-03-30 00:30"),
    ]
    assert names(state_dir, "ledger-*") == [
        "ledger-20260329T0100Z.jsonl",
        "ledger-20260330T0030Z.jsonl",
    ]
    state = ScheduleState.from_json(json.loads((state_dir / STATE_FILE_NAME).read_text()))
    assert state.last_scheduled == utc("2026-03-30 00:30")
    assert state.last_exit_code == 0
    text = out.getvalue()
    assert "firing 2026-03-28T01:30Z:" in text
    assert "firing 2026-03-30T00:30Z:" in text
    assert text.count("done: ") == 3


@pytest.mark.anyio
async def test_once_fires_now_and_a_held_lock_skips_it(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    clock = JumpingClock(utc("2026-03-28 14:07:31"), state_dir)
    async with make_simulator(items=100) as sim:
        config = estate_config(sim)

        async def fire_once(out: io.StringIO) -> int:
            return await run_schedule(
                connection(sim),
                lambda _: config,
                options(state_dir, once=True),
                out=out,
                clock=clock,
                handle_signals=False,
            )

        code = await fire_once(io.StringIO())
        assert code == ExitCode.OK
        assert replicate_requests(sim) > 0
        assert (state_dir / "ledger-20260328T1407Z.jsonl").exists()
        assert not (state_dir / STATE_FILE_NAME).exists()  # not a scheduled time

        sim.state.add_items(sim.state.projects[0].id, 3)
        before = replicate_requests(sim)
        fd = os.open(state_dir / LOCK_FILE_NAME, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # last night's run still going
            out = io.StringIO()
            code = await fire_once(out)
        finally:
            os.close(fd)
        assert code == ExitCode.OK
        assert out.getvalue().startswith("skipped: ")
        assert replicate_requests(sim) == before


# --------------------------------------------------------------------------- the CLI


def test_run_takes_a_manifest_or_discover_not_both(tmp_path: Path) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--ledger", "l", "--manifest", "m.csv", "--discover"])
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--ledger", "l"])
    args = parser.parse_args(["run", "--ledger", "l", "--discover", "--to", "cn-east-2=x"])
    assert args.discover
    assert args.manifest is None


def test_schedule_options_flags_over_config(tmp_path: Path) -> None:
    parser = build_parser()
    config = {
        "schedule": {
            "cron": "0 1 * * *",
            "timezone": "UTC",
            "state_dir": str(tmp_path),
            "keep_ledgers": 5,
            "missed_runs": "skip",
        }
    }
    args = parser.parse_args(["schedule", "--tz", "Europe/Berlin", "--keep", "3"])
    opts = ScheduleOptions.resolve(args, config)
    assert (opts.cron, opts.tz, opts.keep, opts.state_dir) == (
        "0 1 * * *",
        "Europe/Berlin",
        3,
        tmp_path,
    )
    assert opts.policy.mode == "skip"
    with pytest.raises(ConfigError, match="--cron and --tz"):
        ScheduleOptions.resolve(parser.parse_args(["schedule", "--state-dir", "x"]), {})
    with pytest.raises(ConfigError, match="--state-dir"):
        ScheduleOptions.resolve(parser.parse_args(["schedule", "--once"]), {})
    assert ScheduleOptions.resolve(
        parser.parse_args(["schedule", "--once", "--state-dir", "x"]), {}
    ).once


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


SIM = ["--simulate", "--region", "cn-north-1", "--log-level", "error", "--log-format", "json"]
TO_SOUTH = ["--to", "cn-south-1=95bf705ea7424d84d1073b5fb8d7fdf5"]


def test_discover_command_writes_a_manifest_that_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet_env: None
) -> None:
    manifest = tmp_path / "found.csv"
    config = str(ROOT / "configs" / "example.toml")
    code = main(["discover", "--config", config, "-o", str(manifest), *SIM])
    assert code == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cn-north-1/7d457b1297f4c725144e92e6f36ca20a: listed ")
    assert lines[1].startswith("cn-north-4/9b5c38c338682a2dceb365eff70d3ac3: listed ")
    rows = manifest.read_text().splitlines()
    assert lines[-1] == f"wrote {len(rows) - 1} pairs to {manifest}"
    assert len(rows) > 50
    # The manifest is a run's manifest: a simulator with the same seed replicates all of it.
    ledger = tmp_path / "run.jsonl"
    code = main(
        ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--no-progress", *SIM]
    )
    assert code == ExitCode.OK
    assert last_run_finished(ledger)["counts"]["replicated"] == len(rows) - 1


def test_run_discover_records_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet_env: None
) -> None:
    ledger = tmp_path / "run.jsonl"
    argv = ["run", "--discover", "--ledger", str(ledger), "--no-progress", *TO_SOUTH, *SIM]
    argv += ["--name", "manualbk"]
    # A dry run plans the discovered pairs like a manifest's: the table, or JSON alone on
    # stdout (the discovery lines then go to stderr).
    assert main([*argv, "--dry-run"]) == ExitCode.OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("cn-north-1/7d457b1297f4c725144e92e6f36ca20a: listed ")
    assert any(line.split()[:1] == ["total"] for line in table)
    assert table[-1].startswith("estimate: ")
    assert main([*argv, "--dry-run", "--json"]) == ExitCode.OK
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert "listed" in captured.err
    assert plan["manifest"] is None
    assert plan["capabilities_checked"] is True
    assert plan["totals"]["unsupported"] == 0
    to_send = plan["totals"]["to_send"]
    assert to_send > 0
    assert not ledger.exists()
    assert main(argv) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("cn-north-1/7d457b1297f4c725144e92e6f36ca20a: listed ")
    started = next(iter_records(ledger))
    saved = tmp_path / "run.discovered.csv"  # the pairs found, kept for resume
    assert (started["source"], started["manifest"]) == ("discover", str(saved.resolve()))
    assert len(saved.read_text().splitlines()) == 1 + to_send
    finished = last_run_finished(ledger)
    assert finished["counts"]["replicated"] == to_send  # what the plan said, exactly
    assert finished["exit_code"] == 0


def test_a_discovered_run_that_stopped_early_resumes_from_the_pairs_it_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet_env: None
) -> None:
    ledger = tmp_path / "run.jsonl"
    argv = ["run", "--discover", "--ledger", str(ledger), "--no-progress", *TO_SOUTH, *SIM]
    # A deadline that passes at once: the run stops sending right away (exit 6).
    assert main([*argv, "--max-duration", "0.000001"]) == ExitCode.INTERRUPTED
    saved = tmp_path / "run.discovered.csv"
    pairs = len(saved.read_text().splitlines()) - 1
    first = last_run_finished(ledger)["counts"].get("replicated", 0)
    assert first < pairs
    common = ["--ledger", str(ledger), "--no-progress", *SIM]
    assert main(["resume", *common, "--max-duration", "0"]) == ExitCode.OK  # flags win
    capsys.readouterr()
    started = [r for r in iter_records(ledger) if r["event"] == "run_started"]
    assert started[-1]["manifest"] == str(saved.resolve())
    assert last_run_finished(ledger)["counts"]["replicated"] == pairs - first


def test_schedule_once_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet_env: None
) -> None:
    state = tmp_path / "state"
    code = main(["schedule", "--once", "--state-dir", str(state), *TO_SOUTH, *SIM])
    assert code == ExitCode.OK
    assert "firing " in capsys.readouterr().out
    assert len(list(state.glob("ledger-*.jsonl"))) == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["schedule", "--state-dir", "s"], "--cron and --tz"),
        (["schedule", "--cron", "61 2 * * *", "--tz", "UTC", "--state-dir", "s"], "minute field"),
        (["schedule", "--cron", "@daily", "--tz", "Mars/Base", "--state-dir", "s"], "time zone"),
        (
            ["discover", "-o", "m.csv", "--simulate", "--region", "cn-north-1"],
            "no destination rules",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_sigterm_ends_a_waiting_schedule_with_exit_0(tmp_path: Path) -> None:
    """A true process: the scheduler waits for 02:30 Berlin, SIGTERM ends it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_", "CSBS_"))}
    argv = [sys.executable, "-m", "orchestrator", "schedule", "--cron", "30 2 * * *"]
    argv += ["--tz", "Europe/Berlin", "--state-dir", str(tmp_path / "s"), *TO_SOUTH, *SIM]
    argv[argv.index("error")] = "info"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)  # noqa: S603 - our own CLI
    watchdog = threading.Timer(30, proc.kill)  # a hung process fails the test, not the suite
    watchdog.start()
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()  # waits for the first log line, not for luck
        assert json.loads(line)["event"] == "schedule.waiting"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list((tmp_path / "s").glob("ledger-*"))


def test_discover_config_of_the_example_and_k8s_configs_parse() -> None:
    import tomllib

    example = tomllib.loads((ROOT / "configs" / "example.toml").read_text())
    config = DiscoverConfig.from_config(example)
    assert len(config.sources) == 2
    assert [len(r.to) for r in config.rules] == [1, 2]


@pytest.mark.anyio
async def test_a_signal_during_a_firing_is_recorded_as_signal_and_exits_interrupted(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    """The scheduler's signal watcher names the signal; the ledger must say ``signal``
    (with ``interrupted: true``), the one reason resume and the exit code know."""
    async with make_simulator(items=900) as sim:
        config = estate_config(sim)
        out = io.StringIO()
        nightly = Nightly(connection(sim), lambda _: config, state_dir=tmp_path, keep=3, out=out)

        async def stop_once_sending() -> None:
            while replicate_requests(sim) == 0:  # noqa: ASYNC110 - a counter, no event
                await anyio.sleep(0.001)
            nightly.stop("SIGTERM")

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_once_sending)
            code = await nightly(firing("2026-03-28 01:30"))
        assert 0 < replicate_requests(sim) < 600
    assert code == ExitCode.INTERRUPTED
    finished = last_run_finished(tmp_path / "ledger-20260328T0130Z.jsonl")
    assert (finished["reason"], finished["interrupted"]) == ("signal", True)
