"""Where each call is sent: the endpoint of a source region, and the URLs refused."""

from __future__ import annotations

import pytest

from orchestrator.config.settings import RunSettings
from orchestrator.errors import Classification, ConfigError
from orchestrator.service.settings import ClientSettings


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


def test_the_client_settings_are_the_runs_connection_limits_and_error_codes() -> None:
    run = RunSettings.of(
        endpoint="http://127.0.0.1:8080",
        region="cn-north-1",
        endpoints={"cn-east-3": "http://127.0.0.1:8081"},
        request_timeout=7.0,
        concurrency=300,
        ca_file="ca.pem",
        error_codes={"CSBS.9999": "transient"},
    )
    client = ClientSettings.from_settings(run)
    assert (client.endpoint, client.region) == ("http://127.0.0.1:8080", "cn-north-1")
    assert client.endpoint_for("cn-east-3") == "http://127.0.0.1:8081"
    assert client.timeouts.total_s == 7.0
    assert client.limit == 600  # twice the requests in flight
    assert ClientSettings.from_settings(RunSettings.of(concurrency=4)).limit == 256
    assert (client.verify_tls, client.allow_plain_http, client.ca_file) == (True, False, "ca.pem")
    insecure = ClientSettings.from_settings(RunSettings.of(verify_tls=False))
    assert (insecure.verify_tls, insecure.allow_plain_http) == (False, True)
    assert client.error_table.classify(400, "CSBS.9999", None) is Classification.TRANSIENT
