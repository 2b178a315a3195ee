"""Hostile input that used to end as "internal error" (issue 21): a token with CR/LF and a
TOML file nested 50,000 deep are clear usage errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.config.config_file import load_config
from orchestrator.errors import ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.service.auth import Secret
from orchestrator.service.tokens import StaticToken

MANIFEST = (
    "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
    f"00000000-0000-4000-8000-000000000001,{'a' * 32},cn-north-1,cn-east-2,{'b' * 32}\n"
)


@pytest.mark.parametrize("token", ["tok\r\nX-Injected: 1", "tok\nen", "tok\x00en", "tøken"])
def test_a_token_no_header_can_carry_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="CSBS_AUTH_TOKEN"):
        StaticToken(Secret(token))


def test_a_token_with_crlf_exits_2_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CSBS_AUTH_TOKEN", "secret-tok\r\nX-Injected: 1")
    manifest = tmp_path / "m.csv"
    manifest.write_text(MANIFEST)
    argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    code = main([*argv, "--endpoint", "http://127.0.0.1:9", "--no-progress"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "CSBS_AUTH_TOKEN" in err
    assert "secret-tok" not in err
    assert "internal error" not in err


@pytest.mark.parametrize(
    "text", ["a = " + "[" * 50_000 + "]" * 50_000, "a = " + "{b = " * 50_000 + "1" + "}" * 50_000]
)
def test_absurdly_nested_toml_is_a_clear_config_error(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deep.toml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(str(config))
    manifest = tmp_path / "m.csv"
    manifest.write_text(MANIFEST)
    argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    assert main([*argv, "--config", str(config), "--simulate"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "deep.toml" in err
    assert "nested too deeply" in err
