"""``python -m orchestrator simulate``: flags, the start-up line, and a clean exit on
SIGINT/SIGTERM (true subprocess runs)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from orchestrator.cli.simulate import add_arguments, config_from_args
from orchestrator.simulator import SimulatorConfig


def _simulate_known() -> bool:
    from orchestrator.cli.main import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse has no public subcommand list
        if isinstance(action, argparse._SubParsersAction):
            return "simulate" in action.choices
    return False


needs_simulate = pytest.mark.skipif(
    not _simulate_known(), reason="the simulate subcommand is not wired into the CLI yet"
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_become_config() -> None:
    config = config_from_args(
        _parse(
            "--seed",
            "9",
            "--items",
            "42",
            "--ak",
            "AK1",
            "--sk",
            "SK1",
            "--p503",
            "0.25",
            "--throttle-rate",
            "50",
            "--retry-after",
            "2",
            "--auth",
            "aksk",
            "--regions",
            "cn-north-1,cn-east-3",
            "--max-in-flight",
            "100",
            "--faults-on",
            "all",
            "--latency",
            "0.01",
        )
    )
    assert (config.seed, config.items, config.ak, config.sk) == (9, 42, "AK1", "SK1")
    assert config.regions == ("cn-north-1", "cn-east-3")
    assert config.auth == "aksk"
    faults = config.faults
    assert (faults.p503, faults.throttle_rate, faults.retry_after_s) == (0.25, 50.0, 2.0)
    assert (faults.max_in_flight, faults.faults_on, faults.latency_s) == (100, "all", 0.01)


def test_defaults_match_the_config_records() -> None:
    assert config_from_args(_parse()) == SimulatorConfig()


def test_help_hides_secret_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.print_help()
    text = capsys.readouterr().out
    assert SimulatorConfig().sk not in text
    assert "--p-apply-drop" in text


def _start(*extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed argv
        [sys.executable, "-m", "orchestrator", "simulate", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until ready (or EOF if it died)
    if not line:
        process.wait(timeout=10)
        pytest.fail(f"simulator did not start: {process.stderr.read() if process.stderr else ''}")
    return process, json.loads(line)


@needs_simulate
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serves_until_signal_then_exits_zero(signum: signal.Signals) -> None:
    process, info = _start("--seed", "4", "--items", "12", "--ak", "MYAK", "--sk", "MYSK")
    try:
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert not info["base_url"].endswith(":0")
        assert (info["ak"], info["sk"], info["seed"], info["items"]) == ("MYAK", "MYSK", 4, 12)
        assert info["user"]
        assert info["password"]
        assert len(info["projects"]) >= 2
        assert len({p["region"] for p in info["projects"]}) >= 2
        url = f"{info['base_url']}/_sim/info"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback http
            assert json.loads(resp.read())["projects"] == info["projects"]
        # Every source region's own endpoint, in the start line (issue 15).
        assert set(info["endpoints"]) == {p["region"] for p in info["projects"]}
        assert all(u.startswith("http://127.0.0.1:") for u in info["endpoints"].values())
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out == ""  # exactly one line, already read
    assert "Traceback" not in err


@needs_simulate
def test_bad_flags_exit_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "simulate", "--p503", "3"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "p503" in result.stderr
