"""The helpers' one environment rule, the same for a subprocess and for ``main`` in-process."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers.env import subprocess_env, use_sim_credentials

_DEVELOPER = {
    "CSBS_ENDPOINT": "https://example.invalid",
    "HUAWEICLOUD_SDK_REGION": "x",
    "HOME_X": "1",
}


def test_both_ways_leave_the_developer_s_settings_out_and_keep_the_loopback_guards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in _DEVELOPER.items():
        monkeypatch.setenv(name, value)
    process: Any = SimpleNamespace(info={"ak": "AK1", "sk": "SK1"})
    env = subprocess_env(process, CSBS_RATE="2")
    in_process: Any = SimpleNamespace(config=SimpleNamespace(ak="AK1", sk="SK1"))
    use_sim_credentials(monkeypatch, in_process)
    for seen in (env, dict(os.environ)):
        assert "CSBS_ENDPOINT" not in seen
        assert "HUAWEICLOUD_SDK_REGION" not in seen
        assert seen["HOME_X"] == "1"  # not ours: untouched
        assert seen["HUAWEICLOUD_SDK_AK"] == "AK1"
        assert seen["HUAWEICLOUD_SDK_SK"] == "SK1"
        assert seen["CSBS_METADATA_URL"].startswith("http://127.0.0.1:")  # conftest's
        assert "HUAWEICLOUD_SDK_CREDENTIALS_FILE" in seen
    assert env["CSBS_RATE"] == "2"
    assert env["PYTHONUNBUFFERED"] == "1"
