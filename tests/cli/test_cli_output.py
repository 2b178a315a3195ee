"""What a whole ``run`` prints, and where: the progress display on a terminal (a real
pseudo-terminal), structured ``run.progress`` events off one, never both on one stream; log
formats and ``--log-file`` through the CLI; the Prometheus textfile of ``--metrics-file``."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.main import main
from orchestrator.insight.report import build_report
from orchestrator.ledger.file import iter_records
from orchestrator.simulator import Simulator
from tests.helpers.env import use_sim_credentials
from tests.helpers.runkit import estate_manifest
from tests.helpers.simthread import simulator_thread

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "configs" / "example-manifest.csv"  # the estate of --simulate --sim-seed 1
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY = re.compile(r"^done: .*\n\d+ requests, \d+ retries, .*\n$")


def _run_argv(ledger: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        "--simulate",
        "--manifest",
        str(MANIFEST),
        "--ledger",
        str(ledger),
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_", "CSBS_"))}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        env.pop(name, None)
    env.update(extra)
    return env


def _read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bytes:
    """Everything the child writes to the terminal, until it closes its side."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_on_a_terminal_progress_is_drawn_on_stderr_and_stdout_has_only_the_summary(
    tmp_path: Path,
) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(  # noqa: S603 - our own module
        _run_argv(tmp_path / "ledger.jsonl"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=_env(TERM="xterm-256color"),
        cwd=REPO,
    )
    os.close(slave)
    try:
        terminal = _read_pty(master, proc).decode("utf-8", "replace")
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    screen = ANSI.sub("", terminal)
    # The live rows: one per destination region and a total, with counts, rate, retries, ETA.
    for text in ("cn-east-2", "cn-south-1", "total", "retries", "ETA", "60/60"):
        assert text in screen, text
    assert "\x1b[" in terminal  # drawn, not printed as plain lines
    assert '{"' not in screen  # no JSON log line on the terminal
    assert "run.progress" not in screen  # the live rows replace the progress events
    assert SUMMARY.match(out), out
    assert "\x1b" not in out


def test_off_a_terminal_progress_is_json_log_events_on_stderr(tmp_path: Path) -> None:
    proc = subprocess.run(  # noqa: S603 - our own module
        _run_argv(tmp_path / "ledger.jsonl"),
        capture_output=True,
        env=_env(TERM="xterm-256color"),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert SUMMARY.match(out), out
    events = [orjson.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    progress = [e for e in events if e["event"] == "run.progress"]
    assert progress
    assert progress[-1]["final"] is True
    last = progress[-1]
    assert (last["done"], last["total"]) == (60, 60)
    assert set(last["regions"]) == {"cn-east-2", "cn-south-1"}
    assert {"rate", "retries", "eta_s", "failed"} <= set(last)
    assert "\x1b" not in err


# -- in process: log formats, --log-file, metrics ---------------------------------------------


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with simulator_thread(items=40, seed=2, p503=0.2) as sim:
        use_sim_credentials(monkeypatch, sim)
        yield sim


def _run(sim: Simulator, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    manifest = tmp_path / "m.csv"
    if not manifest.exists():
        estate_manifest(sim, manifest)
    config = tmp_path / "fast.toml"  # millisecond backoff: retries without real waiting
    config.write_text("[retry]\nbase_delay = 0.001\nmax_delay = 0.01\nmax_attempts = 20\n")
    ledger = tmp_path / "ledger.jsonl"
    argv = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--config", str(config)]
    code = main([*argv, "--endpoint", sim.base_url, *extra])
    return code, ledger


def test_console_logs_on_stderr_and_json_lines_in_the_log_file(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "run.log"
    code, _ = _run(
        sim,
        tmp_path,
        "--log-format",
        "console",
        "--log-level",
        "debug",
        "--log-file",
        str(log_file),
    )
    assert code == 0
    captured = capsys.readouterr()
    assert SUMMARY.match(captured.out), captured.out
    err_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert err_lines
    assert not any(line.startswith("{") for line in err_lines)
    assert any("run.progress" in line for line in err_lines)
    events: list[dict[str, Any]] = [
        orjson.loads(line) for line in log_file.read_bytes().splitlines()
    ]
    names = {e["event"] for e in events}
    assert "run.progress" in names
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", name) for name in names), names
    assert all({"level", "timestamp"} <= set(e) for e in events)
    assert sim.config.sk.encode() not in log_file.read_bytes()


def test_json_log_format_keeps_stderr_pure_json(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run(sim, tmp_path, "--log-format", "json", "--log-level", "debug")
    assert code == 0
    captured = capsys.readouterr()
    events = [orjson.loads(line) for line in captured.err.splitlines() if line.strip()]
    assert any(e["event"] == "run.progress" and e["final"] for e in events)
    assert SUMMARY.match(captured.out)


def _metrics(path: Path) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_file_after_a_cli_run(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = tmp_path / "csbs.prom"
    before = time.time()
    code, ledger = _run(sim, tmp_path, "--metrics-file", str(prom), "--log-level", "error")
    assert code == 0
    capsys.readouterr()
    metrics = _metrics(prom)
    report = build_report(iter_records(ledger))
    for (region, status), pairs in report.counts.items():
        key = f'csbs_orchestrator_results_total{{destination_region="{region}",status="{status}"}}'
        assert metrics[key] == pairs
    finished = next(r for r in iter_records(ledger) if r["event"] == "run_finished")
    assert metrics["csbs_orchestrator_retries_total"] == report.retries > 0  # p503 = 0.2
    assert metrics["csbs_orchestrator_requests_total"] == finished["requests"]
    assert metrics["csbs_orchestrator_run_duration_seconds"] == pytest.approx(
        finished["duration_s"]
    )
    assert metrics["csbs_orchestrator_run_exit_code"] == 0
    assert before <= metrics["csbs_orchestrator_last_success_timestamp_seconds"] <= time.time()

    # A second run has nothing to send: the last success time is carried over.
    last_success = metrics["csbs_orchestrator_last_success_timestamp_seconds"]
    assert _run(sim, tmp_path, "--metrics-file", str(prom), "--log-level", "error")[0] == 0
    again = _metrics(prom)
    assert again["csbs_orchestrator_last_success_timestamp_seconds"] == last_success
    assert again["csbs_orchestrator_requests_total"] == 0
