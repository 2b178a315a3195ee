"""configs/k8s/multi-account.yaml: the multi-account Indexed Jobs (replication, then coverage)
pass Kubernetes' own schemas, and for every index the command is one the tool takes, with
that account's own config, Secret and ledger directory."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestrator.cli.coverage import coverage_config, parse_duration
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.config.settings import resolve
from orchestrator.discovery.rules import DiscoverConfig, Source
from tests.cli.test_deploy_configs import CONFIGS, parse_command

FILE = CONFIGS / "k8s" / "multi-account.yaml"
PROJECT = "7d457b1297f4c725144e92e6f36ca20a"
#: backoffLimitPerIndex (one failed account does not stop the others) is on from 1.29.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(FILE.read_text()) if d]


def cronjobs() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == "CronJob"}


def pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def command_for(cronjob: dict[str, Any], index: int) -> tuple[list[str], dict[str, str]]:
    """The tool's argv and the secret files its environment is read from, for one index."""
    (container,) = pod(cronjob)["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    script = script.replace("$i", str(index)).replace("$JOB_COMPLETION_INDEX", str(index))
    exports = dict(re.findall(r'export (\w+)="\$\(cat ([^)]+)\)"', script))
    (line,) = [s for s in script.splitlines() if s.startswith("exec ")]
    argv = shlex.split(line)
    assert argv[:2] == ["exec", "csbs-orchestrator"]
    return argv[2:], exports


@pytest.mark.parametrize("version", VERSIONS)
def test_documents_match_the_kubernetes_schemas(version: str) -> None:
    for doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} on {version}: {exc}")


def test_one_index_per_account_each_with_its_own_config_secret_and_ledgers() -> None:
    docs = documents()
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # several pods at once
    jobs = cronjobs()
    assert set(jobs) == {"csbs-replicate-accounts", "csbs-coverage-accounts"}
    for job in jobs.values():
        spec = job["spec"]["jobTemplate"]["spec"]
        assert spec["completionMode"] == "Indexed"
        accounts = spec["completions"]
        assert sorted(config_map["data"]) == [f"account-{i}.toml" for i in range(accounts)]
        template = pod(job)
        (container,) = template["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["state"]["subPathExpr"] == "account-$(JOB_COMPLETION_INDEX)"
        volumes = {v["name"]: v for v in template["volumes"]}
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        secrets = volumes["credentials"]["projected"]["sources"]
        assert [s["secret"]["name"] for s in secrets] == [
            f"csbs-credentials-{i}" for i in range(accounts)
        ]
        for index in range(accounts):
            argv, exports = command_for(job, index)
            args = parse_command(argv)
            assert args.config == f"{mounts['config']['mountPath']}/account-{index}.toml"
            paths = {item["path"] for item in secrets[index]["secret"]["items"]}
            base = mounts["credentials"]["mountPath"]
            assert set(exports) == {
                "HUAWEICLOUD_SDK_AK",
                "HUAWEICLOUD_SDK_SK",
                "HUAWEICLOUD_SDK_PROJECT_ID",
            }
            assert {Path(p).relative_to(base).as_posix() for p in exports.values()} == paths
            assert all(p.startswith(f"{index}/") for p in paths)  # its own account's keys only
            _check_account(args, config_map["data"][f"account-{index}.toml"], mounts)


def _check_account(args: Any, text: str, mounts: dict[str, Any]) -> None:
    config = tomllib.loads(text)
    settings = resolve(None, {"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}, config)
    assert settings.connection.project_id is not None
    assert settings.connection.region is not None
    state = mounts["state"]["mountPath"]
    if args.command == "schedule":
        options = ScheduleOptions.resolve(args, config)
        assert options.once
        assert str(options.state_dir) == state
        assert settings.run.metrics_file is not None
        assert settings.run.metrics_file.startswith(state)
        discover = DiscoverConfig.from_config(
            config,
            default_source=Source(settings.connection.project_id, settings.connection.region),
        )
        discover.check()
        assert discover.select == "newest"
    else:
        assert args.command == "coverage"
        assert args.ledger == [state]  # every dated ledger of this account
        assert parse_duration(args.rpo) == 26 * 3600
        assert args.output.startswith(state)
        assert args.coverage_metrics_file.startswith(state)
        coverage_config(config, settings)
