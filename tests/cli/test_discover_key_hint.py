"""A misspelt ``[discover]`` key is refused as the other sections' are: naming the key and
the one probably meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode


def test_a_misspelt_discover_key_says_which_was_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[connection]\nregion = "cn-north-1"\n\n[discover]\nsourcs = []\n')
    code = main(["discover", "--simulate", "--config", str(config), "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"{config}: [discover]: unknown key 'sourcs'; did you mean 'sources'?" in err
