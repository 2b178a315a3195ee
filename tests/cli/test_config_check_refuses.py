"""``config check`` says exit 2 "for a config that a run would refuse" (its --help): so the
parts of the file only their own command reads are checked too, as that command checks them
([discover] keys and rules, [simulator] knobs, [schedule] cron and timezone), and so are the
endpoint URLs and the region name. Each refusal names the file and the key. Sends nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode

_REFUSED = [
    ('[discover]\nstauts = "available"\n', ["[discover]", "stauts"]),
    ('[[discover.rules]]\nto = "cn-east-2"\n', ["[discover] rules[0]"]),
    ("[simulator]\np5003 = 0.1\n", ["[simulator]", "'p5003'", "did you mean 'p503'"]),
    ('[connection]\nendpoint = "htp://127.0.0.1:1"\n', ["htp://", "[connection.endpoint]"]),
    ('[connection]\nregion = "CN North 1"\n', ["'CN North 1'", "[connection.region]"]),
    (
        '[connection.endpoints]\n"cn-north-1" = "https://127.0.0.1:1/v1"\n',
        ["no path allowed", "cn-north-1"],
    ),
    (
        '[auth]\niam_endpoint = "iam.cn-north-1.example.com"\n',
        ["IAM endpoint", "[auth.iam_endpoint]"],
    ),
    ('[auth]\niam_endpoint = "http://iam.example.com"\n', ["plain HTTP", "[auth.iam_endpoint]"]),
    ('[errors.codes]\n"CSBS.9999" = "transiant"\n', ["'transiant'", "[errors.codes]"]),
    ('[schedule]\ncron = "0 2 * *"\ntimezone = "UTC"\n', ["0 2 * *", "[schedule.cron]"]),
    ('[schedule]\ncron = "0 2 * * *"\ntimezone = "Europe/Berln"\n', ["Europe/Berln"]),
]


@pytest.fixture(autouse=True)
def _no_outer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CSBS_ENDPOINT", "HUAWEICLOUD_SDK_REGION", "CSBS_IAM_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("text", "said"), _REFUSED)
def test_config_check_refuses_what_a_command_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: list[str]
) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(text)
    assert main(["config", "check", "--config", str(config)]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "internal error" not in captured.err
    for part in [str(config), *said]:
        assert part in captured.err


def test_config_check_still_accepts_a_good_config_of_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "good.toml"
    config.write_text(
        '[connection]\nregion = "cn-north-1"\nendpoint = "http://127.0.0.1:8080"\n'
        '[auth]\niam_endpoint = "https://iam.example.com/proxied/iam"\n'
        '[schedule]\ncron = "0 2 * * *"\ntimezone = "Europe/Berlin"\n'
        '[discover]\nstatus = "available"\n'
        '[[discover.rules]]\nto = [{ region = "cn-east-2", project_id = "' + "ab" * 16 + '" }]\n'
        "[simulator]\np503 = 0.1\n"
    )
    assert main(["config", "check", "--config", str(config)]) == ExitCode.OK
    assert "cn-north-1" in capsys.readouterr().out
