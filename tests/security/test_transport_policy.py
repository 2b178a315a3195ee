"""TLS and plain HTTP (issue 21): a private CA is trusted with --ca-file, plain http:// is
refused off loopback before any lookup or connection, no credential ever travels over it,
and --insecure says so once, loudly.

Remote refusals use names under ``.invalid`` (RFC 6761) *and* a resolver that fails the test
if it is ever asked: nothing leaves the machine."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme
from aiohttp import web

from orchestrator.cli.main import main
from orchestrator.config.settings import resolve
from orchestrator.errors import ConfigError, PermanentApiError
from orchestrator.exitcodes import ExitCode
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.connect import check_transport
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import IamPasswordToken
from orchestrator.service.transport_policy import check_endpoint, is_loopback_host
from orchestrator.simulator import Simulator, SimulatorConfig
from tests.helpers.hostile import serve

REMOTE = "http://csbs.example.invalid"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup or outgoing connection fails the test."""

    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError(f"network touched: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr("asyncio.base_events.BaseEventLoop.getaddrinfo", refuse)
    monkeypatch.setattr("asyncio.base_events.BaseEventLoop.create_connection", refuse)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("localhost.example.invalid", False),
        ("10.0.0.1", False),
        ("csbs.example.invalid", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_is_decided_from_the_text_alone(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plain_http_off_loopback_is_refused_unless_insecure() -> None:
    check_endpoint("http://127.0.0.1:8080", insecure=False)
    check_endpoint("https://csbs.example.invalid", insecure=False)
    with pytest.raises(ConfigError, match="plain HTTP"):
        check_endpoint(REMOTE, insecure=False)
    check_endpoint(REMOTE, insecure=True)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_network")
async def test_no_credential_goes_to_a_plain_http_remote_even_with_insecure() -> None:
    for allow in (False, True):
        settings = ClientSettings(endpoint=REMOTE, allow_plain_http=allow)
        async with CsbsClient(settings, AkSkSigner("AK1", Secret("sk"))) as client:
            with pytest.raises(ConfigError, match="plain HTTP"):
                await client.capabilities("a" * 32)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_network")
async def test_the_iam_password_never_goes_to_a_plain_http_remote() -> None:
    auth = IamPasswordToken("http://iam.example.invalid", "user", Secret("pw-123"), "domain")
    settings = ClientSettings(endpoint="http://127.0.0.1:9", allow_plain_http=True)
    async with CsbsClient(settings, auth) as client:
        with pytest.raises(ConfigError, match="IAM token request"):
            await client.capabilities("a" * 32)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("flag", ["--endpoint", "--iam-endpoint"])
@pytest.mark.parametrize("insecure", [False, True])
def test_cli_refuses_a_plain_http_remote_before_sending(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    insecure: bool,
) -> None:
    monkeypatch.setenv("CSBS_AUTH_TOKEN", "tok")
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
        f"00000000-0000-4000-8000-000000000001,{'a' * 32},cn-north-1,cn-east-2,{'b' * 32}\n"
    )
    argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    argv += ["--region", "cn-north-1", flag, "http://host.example.invalid", "--no-progress"]
    code = main(argv + (["--insecure"] if insecure else []))
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "http://host.example.invalid" in err
    assert "plain HTTP" in err
    assert not (tmp_path / "l.jsonl").exists()


def test_insecure_logs_one_clear_warning() -> None:
    settings = resolve(None, {}, {"connection": {"verify_tls": False}})
    with structlog.testing.capture_logs() as logs:
        check_transport(settings)
    warnings = [e for e in logs if e["event"] == "connection.insecure"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "NOT verified" in warnings[0]["detail"]
    with structlog.testing.capture_logs() as logs:
        check_transport(resolve(None, {}, {}))
    assert logs == []


@pytest.mark.anyio
async def test_a_private_ca_is_trusted_with_ca_file(ca: trustme.CA, tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    config = SimulatorConfig.from_knobs(items=3)
    async with Simulator(config, ssl_context=_server_context(ca)) as sim:
        assert sim.base_url.startswith("https://127.0.0.1:")
        project = sim.state.projects[0].id
        signer = AkSkSigner(config.ak, Secret(config.sk))
        trusted = ClientSettings(endpoint=sim.base_url, ca_file=str(pem))
        async with CsbsClient(trusted, signer) as client:
            assert await client.capabilities(project)
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), signer) as client:
            with pytest.raises(PermanentApiError, match="TLS failure"):
                await client.capabilities(project)
        unverified = ClientSettings(endpoint=sim.base_url, verify_tls=False)
        async with CsbsClient(unverified, signer) as client:
            assert await client.capabilities(project)


def test_ca_file_comes_from_flag_env_or_config(tmp_path: Path) -> None:
    pem = str(tmp_path / "ca.pem")
    settings = resolve(None, {}, {"connection": {"ca_file": pem}})
    assert ClientSettings.from_settings(settings).ca_file == pem
    assert resolve(None, {"CSBS_CA_FILE": "x.pem"}, {}).connection.ca_file == "x.pem"


@pytest.mark.anyio
async def test_an_unreadable_ca_file_is_a_clear_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("hello\n")
    for path in (bad, tmp_path / "missing.pem"):
        client = CsbsClient(ClientSettings(endpoint="https://127.0.0.1:9", ca_file=str(path)))
        with pytest.raises(ConfigError, match="--ca-file"):
            await client.__aenter__()


@pytest.mark.anyio
async def test_a_redirect_is_never_followed_and_credentials_stay_home() -> None:
    async def thief(request: web.Request) -> web.Response:
        return web.json_response({"regions": []})

    with serve({("*", "/{tail:.*}"): thief}) as elsewhere:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(elsewhere.base_url + request.path)

        with serve({("*", "/{tail:.*}"): redirect}) as server:
            auth = AkSkSigner("AK1", Secret("sk-redirect-0001"))
            async with CsbsClient(ClientSettings(endpoint=server.base_url), auth) as client:
                with pytest.raises(PermanentApiError, match="HTTP 302"):
                    await client.capabilities("a" * 32)
            assert len(server.seen) == 1
    assert elsewhere.seen == []  # not followed: no signature, token or body went there


@pytest.mark.usefixtures("no_network")
def test_a_plain_http_remote_in_the_endpoints_table_is_refused_before_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """[connection.endpoints] is checked with --endpoint, before the ledger is touched; the
    message says that --insecure does not change it."""
    monkeypatch.setenv("CSBS_AUTH_TOKEN", "tok")
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "c.toml"
    config.write_text('[connection.endpoints]\ncn-north-1 = "http://host.example.invalid"\n')
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
        f"00000000-0000-4000-8000-000000000001,{'a' * 32},cn-north-1,cn-east-2,{'b' * 32}\n"
    )
    argv = ["run", "--manifest", str(manifest), "--ledger", str(tmp_path / "l.jsonl")]
    argv += ["--config", str(config), "--region", "cn-north-1", "--no-progress"]
    for extra in ([], ["--insecure"]):
        code = main(argv + extra)
        err = capsys.readouterr().err
        assert code == ExitCode.USAGE
        assert "endpoint of cn-north-1 http://host.example.invalid" in err
        assert not (tmp_path / "l.jsonl").exists()
    assert "not even with --insecure" in err
    assert "endpoint to http" not in err
