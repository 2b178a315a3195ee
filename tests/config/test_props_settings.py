"""Settings precedence on generated flag/environment/file/default combinations (hypothesis)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.cli.options import add_options
from orchestrator.config import parsers
from orchestrator.config.option import Option
from orchestrator.config.options import RUN_OPTIONS
from orchestrator.config.settings import resolve
from orchestrator.errors import ConfigError

_TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from("é中 "),
    min_size=1,
    max_size=12,
).filter(lambda t: t.strip() == t)


#: Typed values per parser, as a TOML file would hold them; any other option takes text.
_BY_PARSER: dict[Callable[[str], Any], st.SearchStrategy[Any]] = {
    parsers.boolean: st.booleans(),
    parsers.positive_int: st.integers(1, 10_000),
    parsers.non_negative_float: st.floats(0, 1e6, allow_nan=False) | st.integers(0, 1000),
    parsers.percent: st.floats(0.5, 100, allow_nan=False),
    parsers.positive_float: st.floats(0.001, 1e6, allow_nan=False) | st.integers(1, 1000),
    # Durations: seconds, or with a unit.
    parsers.non_negative_seconds: st.floats(0, 1e6, allow_nan=False)
    | st.integers(0, 1000)
    | st.sampled_from(["90s", "30m", "6h", "1d"]),
    parsers.positive_seconds: st.floats(0.001, 1e6, allow_nan=False)
    | st.integers(1, 1000)
    | st.sampled_from(["90s", "2m", "1h"]),
    # A ceiling, or auto (learn it).
    parsers.rate: st.floats(0, 1e6, allow_nan=False) | st.integers(0, 1000) | st.just("auto"),
    parsers.service: st.sampled_from(["csbs", "cbr", "CBR"]),
}


def _values(opt: Option) -> st.SearchStrategy[Any]:
    """Typed values as a TOML file would hold them; flags and environment get ``str()``."""
    return _BY_PARSER.get(opt.parse, _TEXT)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def sources(draw: st.DrawFn) -> tuple[list[str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """argv, environment, config file and, per option, which value each source gave."""
    argv: list[str] = []
    env: dict[str, str] = {}
    config: dict[str, Any] = {}
    given_by: dict[str, Any] = {}
    for opt in RUN_OPTIONS:
        values = _values(opt)
        chosen: dict[str, Any] = {}
        if opt.flag and draw(st.booleans()):
            if opt.name == "verify_tls":  # --insecure takes no value
                argv.append(opt.flag)
                chosen["flag"] = False
            else:
                value = draw(values)
                argv.append(f"{opt.flag}={_text(value)}")
                chosen["flag"] = value
        if opt.env and draw(st.booleans()):
            value = draw(values)
            env[opt.env] = _text(value)
            chosen["env"] = value
        if opt.config and draw(st.booleans()):
            value = draw(values)
            section, key = opt.config.split(".")
            config.setdefault(section, {})[key] = value
            chosen["config"] = value
        given_by[opt.name] = chosen
    return argv, env, config, given_by


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_options(parser, "run")
    add_options(parser, "connection")
    return parser


@given(sources())
def test_flags_beat_environment_beat_file_beat_defaults(
    combination: tuple[list[str], dict[str, str], dict[str, Any], dict[str, Any]],
) -> None:
    """For every option, the resolved value is the flag's if given, else the environment's,
    else the config file's, else the default; each parsed the same way whatever its source.
    The one cross-field rule holds too: a per-region floor above the ceiling is an error when
    someone asked for it, and silently lowered to the ceiling when it is the default."""
    argv, env, config, given_by = combination
    expected: dict[str, Any] = {}
    for opt in RUN_OPTIONS:
        chosen = given_by[opt.name]
        for source in ("flag", "env", "config"):
            if source in chosen:
                value = chosen[source]
                expected[opt.name] = (
                    value
                    if opt.name == "verify_tls" and source == "flag"
                    else (opt.parse(_text(value)))
                )
                break
        else:
            expected[opt.name] = opt.default
    args = vars(_parser().parse_args(argv))
    floor_asked = bool(given_by["per_region_floor"])
    if expected["per_region_floor"] > expected["per_region"]:
        if floor_asked:
            with pytest.raises(ConfigError, match="per-region-floor"):
                resolve(args, env, config)
            return
        expected["per_region_floor"] = expected["per_region"]
    settings = resolve(args, env, config)
    assert {opt.name: settings.value(opt.name) for opt in RUN_OPTIONS} == expected
