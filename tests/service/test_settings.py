"""Where each call is sent: the endpoint of a source region, and the URLs refused."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.service.client import ClientSettings


def test_endpoint_for() -> None:
    assert ClientSettings(region="cn-north-1").endpoint_for(None) == (
        "https://csbs.cn-north-1.myhuaweicloud.com"
    )
    settings = ClientSettings(region="cn-north-1")
    assert settings.endpoint_for("cn-east-3") == "https://csbs.cn-east-3.myhuaweicloud.com"
    explicit = ClientSettings(endpoint="http://127.0.0.1:8080/", region="cn-north-1")
    assert explicit.endpoint_for("cn-east-3") == "http://127.0.0.1:8080"
    with pytest.raises(ConfigError, match="no CSBS endpoint"):
        ClientSettings().endpoint_for(None)
    with pytest.raises(ConfigError, match="invalid region"):
        ClientSettings().endpoint_for("evil.com/x?")
    for bad in ("ftp://h", "not a url", "https://h/?q=1", "http://"):
        with pytest.raises(ConfigError, match="invalid endpoint"):
            ClientSettings(endpoint=bad).endpoint_for(None)
    with pytest.raises(ConfigError, match="credentials") as caught:
        ClientSettings(endpoint="https://user:hunter2@h").endpoint_for(None)
    assert "hunter2" not in str(caught.value)
