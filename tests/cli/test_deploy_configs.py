"""The deployment examples in configs/ parse, systemd and Kubernetes' schemas accept them, and
every command line in them is one the tool takes: real subcommands and options, checked with
the tool's own parser."""

from __future__ import annotations

import argparse
import configparser
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestrator.cli.main import build_parser
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.config.settings import RunSettings, resolve
from orchestrator.discovery.rules import DiscoverConfig, Source
from orchestrator.scheduling.cron import CronSchedule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BINARY = "/usr/local/bin/csbs-orchestrator"
SECRET_ENV = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK")


def parse_command(argv: list[str]) -> argparse.Namespace:
    """``argv`` without the program name, through the real parser (SystemExit if unknown)."""
    return build_parser().parse_args(argv)


def unit(name: str) -> configparser.ConfigParser:
    # systemd allows repeated keys; strict=False keeps the last, enough for these checks.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((CONFIGS / "systemd" / name).read_text())
    return parser


def assert_nightly_once(args: argparse.Namespace) -> None:
    assert args.command == "schedule"
    assert args.once
    assert args.state_dir
    assert args.config


# --------------------------------------------------------------------------- systemd


def test_systemd_service_runs_a_real_command() -> None:
    service = unit("csbs-orchestrator.service")
    assert set(service.sections()) == {"Unit", "Service", "Install"}
    svc = service["Service"]
    assert svc["Type"] == "oneshot"
    argv = shlex.split(svc["ExecStart"])
    assert argv[0] == BINARY
    args = parse_command(argv[1:])
    assert_nightly_once(args)
    assert args.state_dir == "/var/lib/csbs-orchestrator"
    assert svc["StateDirectory"] == "csbs-orchestrator"  # systemd creates that very directory
    # Credentials come from a file, never from the unit itself.
    assert svc["EnvironmentFile"].startswith("/etc/csbs-orchestrator/")
    assert not any(name in value for name in SECRET_ENV for value in svc.values())
    # Time to stop gracefully: more than the run's grace period after SIGTERM.
    assert svc["KillSignal"] == "SIGTERM"
    assert float(svc["TimeoutStopSec"]) > RunSettings().run.grace_period


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own reading of both units. An unknown key or an unparsable value is only a
    warning to systemd (the unit still loads, without it), so any output fails the test.
    verify insists that ExecStart's program exists: it is pointed at this interpreter."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine")
    for name in ("csbs-orchestrator.service", "csbs-orchestrator.timer"):
        text = (CONFIGS / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace(BINARY, sys.executable))
    units = sorted(str(p) for p in tmp_path.iterdir())
    checked = subprocess.run(  # noqa: S603 - our own unit files, in our own temporary directory
        [analyze, "verify", *units], capture_output=True, text=True, timeout=60, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_systemd_timer_fires_the_service_nightly_in_an_explicit_zone() -> None:
    timer = unit("csbs-orchestrator.timer")
    section = timer["Timer"]
    assert section["Unit"] == "csbs-orchestrator.service"
    assert (CONFIGS / "systemd" / section["Unit"]).exists()
    day, time, zone = section["OnCalendar"].split()
    assert (day, time) == ("*-*-*", "02:30:00")
    CronSchedule("30 2 * * *", zone)  # a real IANA zone
    assert section["Persistent"] == "true"  # a missed night runs once at boot
    assert timer["Install"]["WantedBy"] == "timers.target"


# --------------------------------------------------------------------------- cron


def crontab_entries() -> tuple[dict[str, str], list[tuple[str, str]]]:
    env: dict[str, str] = {}
    jobs: list[tuple[str, str]] = []
    for raw in (CONFIGS / "cron" / "csbs-orchestrator.crontab").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 5)
        if "=" in fields[0] and len(fields) == 1:
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
            continue
        jobs.append((" ".join(fields[:5]), fields[5]))
    return env, jobs


def tool_argv(shell: str) -> list[str]:
    """The tool's own argv from a /bin/sh command line: the segment that runs it, without
    ``exec`` and without output redirections."""
    for segment in shell.replace("&&", ";").split(";"):
        words = shlex.split(segment)
        if words and words[0] == "exec":
            words = words[1:]
        if words and words[0].endswith("/csbs-orchestrator"):
            argv: list[str] = []
            skip = False
            for word in words:
                if skip:
                    skip = False
                elif word in {">", ">>", "2>", "2>>"}:
                    skip = True
                elif not word.startswith(("2>&", ">")):
                    argv.append(word)
            return argv
    raise AssertionError(f"no csbs-orchestrator command in {shell!r}")


def test_crontab_line_is_valid_cron_and_a_real_command() -> None:
    env, jobs = crontab_entries()
    assert len(jobs) == 1
    expr, command = jobs[0]
    CronSchedule(expr, env["CRON_TZ"])  # five valid fields, a real zone
    assert "%" not in command  # cron would turn it into a newline
    argv = tool_argv(command)
    assert argv[0] == BINARY
    assert_nightly_once(parse_command(argv[1:]))
    assert not any(f"{name}=" in command for name in SECRET_ENV)


def test_tool_argv_strips_the_shell_around_it() -> None:
    line = ". /x.sh && exec /bin/csbs-orchestrator report l.jsonl >> /log 2>&1"
    assert tool_argv(line) == ["/bin/csbs-orchestrator", "report", "l.jsonl"]


# --------------------------------------------------------------------------- Kubernetes


def k8s_documents() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((CONFIGS / "k8s" / "cronjob.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs if doc}


def test_k8s_cronjob_forbids_overlap_and_runs_a_real_command() -> None:
    docs = k8s_documents()
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "CronJob"}
    cronjob = docs["CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    CronSchedule(spec["schedule"], spec["timeZone"])
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] > RunSettings().run.grace_period
    (container,) = pod["containers"]
    assert container["command"] == ["csbs-orchestrator"]
    assert all(isinstance(a, str) for a in container["args"])  # "14", not 14
    args = parse_command(container["args"])
    assert_nightly_once(args)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert args.state_dir == mounts["state"]
    assert (
        volumes["state"]["persistentVolumeClaim"]["claimName"]
        == (docs["PersistentVolumeClaim"]["metadata"]["name"])
    )
    config_map = docs["ConfigMap"]
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert args.config == f"{mounts['config']}/{next(iter(config_map['data']))}"


#: CronJob.spec.timeZone is stable from 1.27 on; the newest schema the package carries too.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_documents_match_the_kubernetes_schemas(version: str) -> None:
    """Every document against Kubernetes' own OpenAPI schema, strictly: a misspelt field
    (which the API server would drop with a warning) fails, as a wrong type does."""
    for kind, doc in k8s_documents().items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind} against Kubernetes {version}: {exc}")


def test_k8s_credentials_come_from_a_secret() -> None:
    container = k8s_documents()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e for e in container["env"]}
    for name in SECRET_ENV:
        assert "value" not in env[name]
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "csbs-credentials"
        assert ref["key"]


def test_k8s_config_map_is_a_working_config() -> None:
    docs = k8s_documents()
    config = tomllib.loads(docs["ConfigMap"]["data"]["config.toml"])
    settings = resolve(
        None, {"HUAWEICLOUD_SDK_PROJECT_ID": "7d457b1297f4c725144e92e6f36ca20a"}, config
    )
    assert settings.connection.region == "cn-north-1"
    assert settings.connection.project_id is not None
    discover = DiscoverConfig.from_config(
        config, default_source=Source(settings.connection.project_id, settings.connection.region)
    )
    discover.check()
    assert discover.filters.created_since is not None


# --------------------------------------------------------------------------- the example config


def test_example_config_schedule_section_resolves() -> None:
    config = tomllib.loads((CONFIGS / "example.toml").read_text())
    args = parse_command(["schedule", "--config", str(CONFIGS / "example.toml")])
    options = ScheduleOptions.resolve(args, config)
    assert options.schedule() == CronSchedule("30 2 * * *", "Europe/Berlin")
    assert options.keep == 14
    assert str(options.state_dir) == "/var/lib/csbs-orchestrator"


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "--bogus"],
        ["schedul", "--once"],
    ],
)
def test_the_check_would_catch_a_wrong_command(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_command(argv)
