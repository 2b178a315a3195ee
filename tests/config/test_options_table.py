"""The one settings table: every section and key of the config file, each flag built from a
row, the simulator's knobs held to the simulator's own records."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser, main
from orchestrator.cli.schedule_options import ScheduleOptions
from orchestrator.cli.simulated import simulator_knobs
from orchestrator.config.config_file import known_config_keys, load_config
from orchestrator.config.options import OPTIONS, section_keys
from orchestrator.config.schedule_settings import ScheduleSettings
from orchestrator.config.settings import RunSettings
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.simulator import FaultConfig, SimulatorConfig


def test_names_flags_and_keys_are_each_declared_once() -> None:
    names = [o.name for o in OPTIONS]
    flags = [o.flag for o in OPTIONS if o.flag]
    keys = [o.config for o in OPTIONS if o.config]
    assert len(names) == len(set(names))
    assert len(flags) == len(set(flags))
    assert len(keys) == len(set(keys))


def test_every_section_of_the_file_comes_from_the_table() -> None:
    known = known_config_keys()
    assert set(known) == {k.split(".")[0] for k in (o.config for o in OPTIONS) if k}
    assert {"schedule", "discover", "simulator"} <= set(known)
    assert known["schedule"] == section_keys("schedule")
    assert "keep_ledgers" in section_keys("schedule")
    assert "endpoints" in section_keys("connection")
    assert known["errors"] == frozenset({"codes"})


def test_the_simulator_rows_are_the_simulators_knobs() -> None:
    """config may not import the simulator, nor the simulator config: this test holds the
    table's [simulator] keys to SimulatorConfig.from_knobs."""
    fields = {f.name for f in dataclasses.fields(SimulatorConfig)} - {"faults"}
    fields |= {f.name for f in dataclasses.fields(FaultConfig)}
    assert section_keys("simulator") == fields


def test_every_flag_of_a_row_is_on_the_parser_of_its_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    by_group = {
        "schedule": "schedule",
        "discover": "discover",
        "simulator": "run",
        "coverage": "coverage",
        "run": "run",
        "connection": "track",
    }
    for opt in OPTIONS:
        if opt.flag:
            command = sub.choices[by_group[opt.group]]
            flags = {f for a in command._actions for f in a.option_strings}
            assert opt.flag in flags, (opt.name, opt.flag)


def test_schedule_file_values_are_parsed_by_their_row_and_errors_name_file_and_key(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[schedule]\nstate_dir = "s"\nkeep_ledgers = 0\n', encoding="utf-8")
    args = build_parser().parse_args(["schedule", "--once", "--config", str(config)])
    with pytest.raises(ConfigError, match=r"c\.toml: \[schedule\.keep_ledgers\]: must be at least"):
        ScheduleOptions.resolve(args, load_config(str(config)))
    config.write_text('[schedule]\nstate_dir = "s"\nmax_lateness = "3600"\n', encoding="utf-8")
    opts = ScheduleOptions.resolve(args, load_config(str(config)))
    assert opts.policy.max_lateness.total_seconds() == 3600
    assert opts.keep == 14  # the row's default


def test_simulator_knobs_flag_over_file_over_the_simulators_default() -> None:
    parser = build_parser()
    config = {"simulator": {"seed": 7, "items": 5, "p503x": 1}}
    args = parser.parse_args(["coverage", "--rpo", "1h", "--simulate"])
    knobs = simulator_knobs(args, config)
    assert (knobs["seed"], knobs["items"]) == (7, 5)  # the file's seed, no flag given
    assert knobs["p503x"] == 1  # handed on: the simulator refuses it by name
    assert "age_days" not in knobs  # set nowhere: the simulator's own default
    args = parser.parse_args(["coverage", "--rpo", "1h", "--sim-seed", "3", "--sim-age-days", "2"])
    knobs = simulator_knobs(args, config)
    assert (knobs["seed"], knobs["age_days"]) == (3, 2)
    assert SimulatorConfig.from_knobs(**simulator_knobs(args, {})).seed == 3


def test_config_check_shows_the_schedule_discover_and_simulator_keys_and_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[schedule]\ncron = "@daily"\n[discover]\nselect = "newest"\n[simulator]\np503 = 0.2\n',
        encoding="utf-8",
    )
    assert main(["config", "check", "--config", str(config), "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["cron"] == {"value": "@daily", "source": f"file {config} [schedule.cron]"}
    assert doc["keep"] == {"value": 14, "source": "default"}
    assert doc["select"] == {"value": "newest", "source": f"file {config} [discover.select]"}
    assert doc["sim_p503"] == {"value": 0.2, "source": f"file {config} [simulator.p503]"}
    assert doc["concurrency"]["source"] == "default"  # the run's settings as before
    assert "once" not in doc  # a flag alone is no setting of the file
    assert main(["config", "check", "--config", str(config)]) == ExitCode.OK
    table = capsys.readouterr().out
    assert f"file {config} [simulator.p503]" in table


def test_config_explain_lists_every_key_with_its_flag_and_environment_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "explain"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "[schedule] keep_ledgers  --keep  (default 14)" in out
    assert "[limits] concurrency  --concurrency  CSBS_CONCURRENCY  (default 64)" in out
    assert "[discover] created_since  --since" in out
    assert "[simulator] p503" in out
    assert main(["config", "explain", "--json"]) == ExitCode.OK
    rows = json.loads(capsys.readouterr().out)
    assert {r["key"] for r in rows if r["key"]} >= {"[simulator] sk", "[errors] codes"}
    assert all(r["default"] is None for r in rows if r["key"] == "[auth] password")


def test_the_run_settings_have_a_record_per_section_and_a_field_per_row() -> None:
    """``[limits] concurrency`` is ``settings.limits.concurrency``: each row of the run lands
    in the record of its config key's section, with the row's default."""
    rows = [o for o in OPTIONS if o.record == "run"]
    layout = {
        f.name: {g.name for g in dataclasses.fields(getattr(RunSettings(), f.name))}
        for f in dataclasses.fields(RunSettings)
    }
    expected: dict[str, set[str]] = {}
    for opt in rows:
        assert opt.config is not None
        expected.setdefault(opt.config.split(".")[0], set()).add(opt.name)
    assert layout == expected
    defaults = RunSettings()
    tables = {"endpoints", "error_codes"}  # read whole: {} when absent
    assert {o.name: defaults.value(o.name) for o in rows if o.name not in tables} == {
        o.name: o.default for o in rows if o.name not in tables
    }
    assert defaults.public()["error_codes"] == defaults.public()["endpoints"] == {}


def test_run_settings_are_built_and_changed_by_the_rows_names() -> None:
    settings = RunSettings.of(concurrency=8, max_attempts=2, service="cbr")
    assert (settings.limits.concurrency, settings.retry.max_attempts) == (8, 2)
    assert settings.connection.service == "cbr"
    assert settings.limits.per_region == RunSettings().limits.per_region
    changed = settings.with_values(metrics_file="m.prom", concurrency=4)
    assert (changed.run.metrics_file, changed.limits.concurrency) == ("m.prom", 4)
    assert changed.retry == settings.retry  # the sections not named are kept
    with pytest.raises(TypeError, match="concurency"):
        RunSettings.of(concurency=8)
    assert "hunter2" not in repr(RunSettings.of(iam_password="hunter2"))


def test_the_schedule_record_has_a_field_per_row_with_the_rows_default() -> None:
    rows = {o.name: o.default for o in OPTIONS if o.record == "schedule"}
    defaults = ScheduleSettings()
    assert {f.name for f in dataclasses.fields(ScheduleSettings)} == set(rows)
    assert {name: getattr(defaults, name) for name in rows} == rows
    resolved = ScheduleSettings.resolve(
        {"keep": 3}, {}, {"schedule": {"keep_ledgers": 5, "cron": "@daily"}}
    )
    assert (resolved.keep, resolved.cron, resolved.tz) == (3, "@daily", None)
