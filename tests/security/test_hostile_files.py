"""Hostile files (issue 21): a state directory others may write holds symlinks and FIFOs
where the scheduler's lock, state and dated ledgers go; the tool refuses them with a clear
error, never follows a symlink out of the directory, never blocks on a FIFO. Every file the
tool creates is 0600 whatever the umask (the metrics file 0644, as documented)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from orchestrator.cli.main import main
from orchestrator.cli.nightly import Nightly
from orchestrator.config.settings import RunSettings
from orchestrator.discovery.rules import Destination as Dest
from orchestrator.discovery.rules import DiscoverConfig, Rule, Source
from orchestrator.errors import LedgerError, ScheduleError
from orchestrator.exitcodes import ExitCode
from orchestrator.ledger.file import LedgerWriter, iter_records
from orchestrator.safe_file import NotRegularFileError, open_or_create, open_regular
from orchestrator.scheduling.firing import Firing
from orchestrator.scheduling.state import LOCK_FILE_NAME, STATE_FILE_NAME, StateFile
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.connect import Connection
from tests.conftest import MakeSimulator

ROOT = Path(__file__).resolve().parent.parent
SIM = ["--simulate", "--region", "cn-north-1", "--log-level", "error", "--log-format", "json"]
TO_SOUTH = ["--to", "cn-south-1=95bf705ea7424d84d1073b5fb8d7fdf5"]
OUTSIDE = b"a file outside the state directory\nits last line"


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside.txt"
    target.write_bytes(OUTSIDE)
    return target


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --------------------------------------------------------------------------- the helper


def test_open_regular_refuses_symlinks_fifos_and_directories(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(_outside(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="symbolic link"):
        open_regular(link, os.O_RDONLY)
    os.close(open_regular(link, os.O_RDONLY, follow=True))  # a path the user named
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        with pytest.raises(NotRegularFileError, match="FIFO"):
            open_regular(fifo, flags)  # at once: no reader or writer needed
    with pytest.raises(NotRegularFileError, match="directory"):
        open_regular(tmp_path, os.O_RDONLY)
    with pytest.raises(NotRegularFileError, match="symbolic link"):
        open_or_create(link, os.O_WRONLY)
    assert (tmp_path / "outside.txt").read_bytes() == OUTSIDE


@pytest.mark.usefixtures("umask_zero")
def test_created_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    fd, created = open_or_create(tmp_path / "new", os.O_WRONLY)
    os.close(fd)
    assert created
    assert _mode(tmp_path / "new") == 0o600


# --------------------------------------------------------------------------- the scheduler


def test_a_symlinked_lock_is_refused_and_its_target_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet_env: None
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    target = _outside(tmp_path)
    (state / LOCK_FILE_NAME).symlink_to(target)
    code = main(["schedule", "--once", "--state-dir", str(state), *TO_SOUTH, *SIM])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "schedule lock" in err
    assert "symbolic link" in err
    assert "Traceback" not in err
    assert target.read_bytes() == OUTSIDE


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_hostile_state_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / STATE_FILE_NAME
    if kind == "symlink":
        path.symlink_to(_outside(tmp_path))
    else:
        os.mkfifo(path)
    with pytest.raises(ScheduleError, match="symbolic link" if kind == "symlink" else "FIFO"):
        StateFile(path).load()


def _connection(sim: object) -> Connection:
    settings = RunSettings.of(endpoint=sim.base_url, max_attempts=2)  # type: ignore[attr-defined]
    config = sim.config  # type: ignore[attr-defined]
    return Connection(settings, AkSkSigner(config.ak, Secret(config.sk)))


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["symlink", "fifo"])
async def test_a_hostile_dated_ledger_is_refused_without_writing_or_hanging(
    make_simulator: MakeSimulator, tmp_path: Path, kind: str
) -> None:
    target = _outside(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    planted = state / "ledger-20260328T0130Z.jsonl"
    if kind == "symlink":
        planted.symlink_to(target)
    else:
        os.mkfifo(planted)
    async with make_simulator(items=20) as sim:
        config = DiscoverConfig(
            (Source(sim.state.projects[0].id, sim.state.projects[0].region),),
            (Rule((Dest("cn-south-1", sim.state.destination_projects["cn-south-1"]),)),),
        )
        nightly = Nightly(
            _connection(sim), lambda _: config, state_dir=state, keep=3, out=io.StringIO()
        )
        when = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
        with anyio.fail_after(20), pytest.raises(LedgerError) as raised:
            await nightly(Firing(when, when))
    assert ("symbolic link" if kind == "symlink" else "FIFO") in str(raised.value)
    assert target.read_bytes() == OUTSIDE  # not cut, nothing appended


def test_schedule_once_with_fifos_for_ledgers_ends_at_once(tmp_path: Path) -> None:
    """A true process: FIFOs at the dated ledger names of this minute and the next; the
    firing fails with exit 8 and a clear message instead of hanging."""
    state = tmp_path / "state"
    state.mkdir()
    now = datetime.now(UTC)
    for moment in (now, now + timedelta(minutes=1)):
        os.mkfifo(state / f"ledger-{moment:%Y%m%dT%H%MZ}.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_", "CSBS_"))}
    argv = [sys.executable, "-m", "orchestrator", "schedule", "--once"]
    argv += ["--state-dir", str(state), *TO_SOUTH, *SIM]
    done = subprocess.run(  # noqa: S603 - our own CLI
        argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == ExitCode.LEDGER, done.stderr
    assert "FIFO" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_ledger_writer_refuses_a_symlink(tmp_path: Path) -> None:
    target = _outside(tmp_path)
    link = tmp_path / "ledger.jsonl"
    link.symlink_to(target)

    async def write() -> None:
        async with LedgerWriter(link) as ledger:
            ledger.write({"v": 1, "event": "x"})

    with pytest.raises(LedgerError, match="symbolic link"):
        anyio.run(write)
    assert target.read_bytes() == OUTSIDE


def test_reading_a_fifo_ledger_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "l.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(LedgerError, match="FIFO"):
        list(iter_records(fifo))


# --------------------------------------------------------------------------- file modes


@pytest.mark.usefixtures("umask_zero", "quiet_env")
def test_every_file_a_run_creates_is_0600_and_metrics_0644(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "run.jsonl"
    paths = {
        "log": tmp_path / "run.log",
        "metrics": tmp_path / "run.prom",
        "limits": tmp_path / "limits.json",
    }
    argv = ["run", "--discover", "--ledger", str(ledger), "--no-progress", *TO_SOUTH, *SIM]
    argv += ["--log-file", str(paths["log"]), "--metrics-file", str(paths["metrics"])]
    argv += ["--state-file", str(paths["limits"])]
    assert main(argv) == ExitCode.OK
    failed = tmp_path / "again.csv"
    assert main(["report", str(ledger), "--failed-manifest", str(failed)]) == ExitCode.OK
    found = tmp_path / "found.csv"
    assert main(["discover", "-o", str(found), *TO_SOUTH, *SIM]) == ExitCode.OK
    capsys.readouterr()
    private = [ledger, paths["log"], tmp_path / "run.discovered.csv", failed, found]
    snapshot = Path(str(ledger) + ".snapshot")
    private += [p for p in (snapshot, paths["limits"]) if p.exists()]
    assert {p.name: oct(_mode(p)) for p in private} == {p.name: oct(0o600) for p in private}
    assert _mode(paths["metrics"]) == 0o644
