"""Run settings: flags over the environment over the config file over the defaults, and
the errors that say which of them is wrong."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.options import add_options
from orchestrator.config.config_file import load_config
from orchestrator.config.settings import resolve
from orchestrator.errors import ConfigError


def flags(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    for group in ("run", "connection"):
        add_options(parser, group)
    return vars(parser.parse_args(list(argv)))


def test_flags_over_environment_over_config_over_defaults() -> None:
    config = {"limits": {"concurrency": 16, "rate": 5}}
    env = {"CSBS_CONCURRENCY": "24", "CSBS_RATE": "7"}
    assert resolve(flags(), {}, {}).limits.concurrency == 64
    assert resolve(flags(), {}, config).limits.concurrency == 16
    assert resolve(flags(), env, config).limits.concurrency == 24
    settings = resolve(flags("--concurrency", "8"), env, config)
    assert (settings.limits.concurrency, settings.limits.rate) == (8, 7.0)


def test_per_region_alone_below_the_default_floor_lowers_the_floor() -> None:
    settings = resolve(flags("--per-region", "1"), {}, {})
    assert (settings.limits.per_region, settings.limits.per_region_floor) == (1, 1)
    settings = resolve(flags(), {}, {"limits": {"per_region": 1}})
    assert (settings.limits.per_region, settings.limits.per_region_floor) == (1, 1)


@pytest.mark.parametrize(
    ("argv", "config"),
    [
        (("--per-region", "2", "--per-region-floor", "3"), {}),
        (("--per-region", "2"), {"limits": {"per_region_floor": 3}}),
    ],
)
def test_a_floor_that_was_asked_for_above_the_ceiling_is_an_error(
    argv: tuple[str, ...], config: dict[str, dict[str, int]]
) -> None:
    with pytest.raises(ConfigError, match=r"--per-region-floor \(3\) exceeds --per-region \(2\)"):
        resolve(flags(*argv), {}, config)


def test_a_bad_value_names_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"environment CSBS_CONCURRENCY: .*'zero'"):
        resolve(flags(), {"CSBS_CONCURRENCY": "zero"}, {})
    with pytest.raises(ConfigError, match=r"c\.toml: \[limits\.per_region\]: must be at least 1"):
        resolve(flags(), {}, {"limits": {"per_region": 0}}, config_path="c.toml")


def test_rate_auto_learns_without_a_ceiling_and_pace_can_be_turned_off() -> None:
    assert resolve(flags(), {}, {}).limits.rate == 0.0  # auto, the default
    assert resolve(flags("--rate", "auto"), {}, {}).limits.rate == 0.0
    assert resolve(flags(), {"CSBS_RATE": "AUTO"}, {}).limits.rate == 0.0
    assert resolve(flags("--rate", "40"), {}, {}).limits.rate == 40.0
    assert resolve(flags(), {}, {}).limits.pace is True
    assert resolve(flags("--pace", "false"), {}, {}).limits.pace is False
    assert resolve(flags(), {}, {"limits": {"pace": False}}).limits.pace is False
    with pytest.raises(ConfigError, match=r"c\.toml: \[limits\.rate\]"):
        resolve(flags(), {}, {"limits": {"rate": "fast"}}, config_path="c.toml")


def test_the_config_file_takes_every_documented_table_and_key(tmp_path: Path) -> None:
    """[connection.endpoints] (docs/region-endpoints.md) and [schedule] coverage/rpo
    (docs/coverage.md) are read by other modules: the typo check must not refuse them."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[connection]\nregion = "cn-north-4"\n\n'
        '[connection.endpoints]\ncn-north-4 = "https://csbs.example.internal"\n\n'
        '[schedule]\ncoverage = true\nrpo = "26h"\n'
    )
    config = load_config(str(path))
    settings = resolve(None, {}, config, config_path=str(path))
    assert settings.connection.endpoints == {"cn-north-4": "https://csbs.example.internal"}
    path.write_text('[connection]\nendpoins = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'endpoins'; did you mean 'endpoint"):
        load_config(str(path))


#: The ``settings`` record of a ``run_started`` line as the flat RunSettings wrote it (before
#: its sections): ledgers in the field hold these keys in this order, and resume reads them.
_RECORDED = (
    '{"service": "cbr", "endpoint": null, "region": null, "project_id": null, '
    '"iam_endpoint": null, "iam_user": "u", "iam_domain": null, "verify_tls": true, '
    '"ca_file": null, "request_timeout": 60.0, "concurrency": 9, "per_region": 32, '
    '"per_region_floor": 2, "adaptive": true, "rate": 0.0, "pace": true, "max_attempts": 8, '
    '"retry_time": 5.0, "unreachable_after": 60.0, "reconcile_skew": 300.0, '
    '"retry_base": 0.5, "retry_cap": 30.0, "retry_budget": 20.0, "failure_min_results": 1000, '
    '"failure_percent": 50.0, "max_duration": 0.0, "grace_period": 30.0, "metrics_file": "m", '
    '"state_file": null, "error_codes": {"X.1": "transient"}, '
    '"endpoints": {"cn-north-4": "https://x.example"}}'
)


def test_the_ledgers_settings_record_stays_flat_in_the_tables_order_without_secrets() -> None:
    config = {
        "limits": {"concurrency": 9},
        "retry": {"max_elapsed": 5},
        "run": {"metrics_file": "m"},
        "errors": {"codes": {"X.1": "transient"}},
        "connection": {"endpoints": {"cn-north-4": "https://x.example"}, "service": "cbr"},
    }
    env = {"CSBS_IAM_PASSWORD": "hunter2", "CSBS_IAM_USER": "u"}
    settings = resolve(None, env, config, config_path="c.toml")
    assert settings.auth.iam_password == "hunter2"
    assert json.dumps(settings.public()) == _RECORDED
