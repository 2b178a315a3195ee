"""Secrets never in logs, ledger or errors, whatever a hostile server echoes (issue 21): the
redactor's key list covers the usual secret names; secrets are scrubbed in every escaped
form (JSON, repr, both); tokens learnt at run time (an IAM token) are scrubbed from the
moment they are first sent; a server that echoes credentials in an error message leaves no
trace of them in the ledger's error_msg, the log file or the terminal."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog
from aiohttp import web

from orchestrator.cli.log_redaction import Redactor
from orchestrator.cli.logs import close_logging, configure_logging
from orchestrator.cli.main import main
from orchestrator.exitcodes import ExitCode
from orchestrator.secret_set import SecretSet
from tests.helpers.hostile import CAPABILITIES, capabilities, serve

PROJECT = "a" * 32
ITEM = "00000000-0000-4000-8000-000000000001"
ODD = "pa'ss\"wo\\rd-1234"  # a quote of each kind and a backslash
IAM_TOKEN = 'MIIiam"tok\\en-5678'
PASSWORD = "iam-pass'word\"9"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    close_logging()


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "X-Api-Key",
        "private_key",
        "privateKey",
        "credential",
        "credentials",
        "pwd",
        "db_pwd",
        "passphrase",
        "ssh_passphrase",
        "secret",
        "client_secret",
        "token",
        "security_token",
        "authorization",
        "signature",
        "access_key_secret",
    ],
)
def test_usual_secret_names_are_masked(key: str) -> None:
    assert Redactor()(None, "info", {key: "value"})[key] == "***"


@pytest.mark.parametrize("key", ["total_tokens", "checkpoint_item_id", "pair_key", "event"])
def test_ordinary_names_stay_readable(key: str) -> None:
    assert Redactor()(None, "info", {key: "value"})[key] == "value"


def test_every_escaped_form_is_scrubbed() -> None:
    secrets = SecretSet([ODD])
    for shown in (
        ODD,
        orjson.dumps(ODD).decode(),
        repr(ODD),
        orjson.dumps(repr(ODD)).decode(),
        repr(orjson.dumps(ODD).decode()),
    ):
        assert secrets.scrub(f"<{shown}>").count("***") == 1, shown
        assert ODD not in secrets.scrub(shown)
    assert secrets.scrub_bytes(orjson.dumps({"x": repr({"k": ODD})})).count(b"***") == 1


class _Holder:
    """repr() shows the secret the way Python escapes it: quotes and backslashes."""

    def __repr__(self) -> str:
        return f"Holder({ODD!r})"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_repr_of_an_odd_secret_never_reaches_a_log(fmt: str, tmp_path: Path) -> None:
    out = io.BytesIO() if fmt == "json" else io.StringIO()
    log_file = tmp_path / "log.jsonl"
    configure_logging(
        fmt=fmt,  # type: ignore[arg-type]
        level="info",
        log_file=str(log_file),
        stream=out,
        secrets=[ODD],
    )
    structlog.get_logger().info("x", obj=_Holder(), nested={"detail": [_Holder()]})
    value = out.getvalue()
    text = value.decode() if isinstance(value, bytes) else value
    for written in (text, log_file.read_text()):
        assert "pa'ss" not in written
        assert "pa\\'ss" not in written
        assert "***" in written


def test_a_one_letter_credential_does_not_mangle_every_log_line() -> None:
    # A user who typed HUAWEICLOUD_SDK_AK=a saw "credenti***ls.source" and "timest***mp" keys.
    out = io.BytesIO()
    configure_logging(fmt="json", level="info", log_file=None, stream=out, secrets=["a", "bc"])
    structlog.get_logger().info("credentials.source", source="environment")
    line = orjson.loads(out.getvalue())
    assert line["event"] == "credentials.source"
    assert "timestamp" in line
    assert line["level"] == "info"


def test_a_secret_learnt_after_logging_started_is_scrubbed() -> None:
    out = io.BytesIO()
    known = SecretSet(["first-secret"])
    configure_logging(fmt="json", level="info", log_file=None, stream=out, secrets=known)
    known.add("token-learnt-later")
    structlog.get_logger().info("x", detail="sent token-learnt-later and first-secret")
    assert orjson.loads(out.getvalue())["detail"] == "sent *** and ***"


# --------------------------------------------------------------------------- a hostile server


async def _iam(request: web.Request) -> web.Response:
    body = {"token": {"issued_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z"}}
    return web.json_response(body, status=201, headers={"X-Subject-Token": IAM_TOKEN})


async def _echo(request: web.Request) -> web.Response:
    """Every credential of the request, echoed back in a final 400 (raw and JSON-escaped)."""
    token = request.headers.get("X-Auth-Token", "")
    message = f"bad: token={token} json={orjson.dumps(token).decode()} repr={token!r}"
    return web.json_response({"error_code": "CSBS.9999", "error_msg": message}, status=400)


def _run_against(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str
) -> tuple[int, Path, Path]:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "CSBS_AUTH_TOKEN", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CSBS_IAM_PASSWORD", PASSWORD)
    config = tmp_path / "c.toml"
    config.write_text('[auth]\nuser = "u"\ndomain = "d"\n')
    manifest, ledger, log = tmp_path / "m.csv", tmp_path / "l.jsonl", tmp_path / "run.log"
    manifest.write_text(
        "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
        f"{ITEM},{PROJECT},cn-north-1,cn-east-2,{'b' * 32}\n"
    )
    argv = ["run", "--manifest", str(manifest), "--ledger", str(ledger), "--config", str(config)]
    argv += ["--endpoint", base_url, "--iam-endpoint", base_url, "--no-progress"]
    argv += ["--log-file", str(log), "--log-level", "debug", "--log-format", "console"]
    return main(argv), ledger, log


def test_an_echoed_iam_token_never_reaches_ledger_log_or_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = {("POST", "/v3/auth/tokens"): _iam, CAPABILITIES: capabilities}
    routes[("*", "/v1/{tail:.*}")] = _echo
    with serve(routes) as server:
        code, ledger, log = _run_against(tmp_path, monkeypatch, server.base_url)
    out, err = capsys.readouterr()
    assert code == ExitCode.FAILED
    assert any(s.headers.get("X-Auth-Token") == IAM_TOKEN for s in server.seen)  # it was used
    results = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    failed = [r for r in results if r.get("status") == "failed"]
    assert failed
    assert failed[0]["error_msg"].startswith("bad: token=***")
    written = [ledger.read_text(), log.read_text(), out, err]
    for form in (IAM_TOKEN, orjson.dumps(IAM_TOKEN).decode()[1:-1], repr(IAM_TOKEN)[1:-1]):
        for text in written:
            assert form not in text
    for text in written:
        assert "MIIiam" not in text


async def _refuse_echoing_the_body(request: web.Request) -> web.Response:
    body = (await request.read()).decode()
    return web.json_response({"error_code": "IAM.0001", "error_msg": body}, status=401)


def test_an_echoed_iam_password_never_reaches_the_terminal_or_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = {("POST", "/v3/auth/tokens"): _refuse_echoing_the_body}
    with serve(routes) as server:
        code, ledger, log = _run_against(tmp_path, monkeypatch, server.base_url)
    out, err = capsys.readouterr()
    assert code == ExitCode.AUTH
    assert "credentials" in out + err
    secrets = SecretSet([PASSWORD])
    # Refused before run_started: no ledger file at all, so no password in one either.
    assert not ledger.exists()
    for text in (log.read_text(), out, err):
        assert secrets.scrub(text) == text  # no form of the password anywhere
        assert "iam-pass" not in text


async def _echo_signature(request: web.Request) -> web.Response:
    message = f"refused {request.headers.get('Authorization')}"
    return web.json_response({"error_code": "CSBS.9998", "error_msg": message}, status=400)


def test_an_echoed_signature_never_reaches_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CSBS_AUTH_TOKEN", "CSBS_IAM_PASSWORD", "CSBS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKECHO01")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "sk-echo-secret-0001")
    manifest, ledger = tmp_path / "m.csv", tmp_path / "l.jsonl"
    manifest.write_text(
        "checkpoint_item_id,project_id,source_region,destination_region,destination_project_id\n"
        f"{ITEM},{PROJECT},cn-north-1,cn-east-2,{'b' * 32}\n"
    )
    with serve({CAPABILITIES: capabilities, ("*", "/v1/{tail:.*}"): _echo_signature}) as server:
        argv = ["run", "--manifest", str(manifest), "--ledger", str(ledger)]
        code = main([*argv, "--endpoint", server.base_url, "--no-progress"])
    capsys.readouterr()
    assert code == ExitCode.FAILED
    sent = server.seen[-1].headers["Authorization"]
    signature = sent.rsplit("Signature=", 1)[1]
    failed = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    msg = next(r["error_msg"] for r in failed if r.get("status") == "failed")
    assert msg == "refused ***"
    assert signature not in ledger.read_text()


@pytest.mark.anyio
async def test_a_2xx_answer_echoing_the_token_is_scrubbed_too() -> None:
    from orchestrator.errors import TransientApiError
    from orchestrator.service.auth import Secret
    from orchestrator.service.client import CsbsClient
    from orchestrator.service.settings import ClientSettings
    from orchestrator.service.tokens import StaticToken

    async def echo_ok(request: web.Request) -> web.Response:
        return web.json_response({"unexpected": request.headers.get("X-Auth-Token")})

    with serve({("*", "/{tail:.*}"): echo_ok}) as server:
        auth = StaticToken(Secret("tok-2xx-echo-0001"))
        async with CsbsClient(ClientSettings(endpoint=server.base_url), auth) as client:
            with pytest.raises(TransientApiError) as raised:
                await client.capabilities(PROJECT)
    assert "tok-2xx-echo" not in str(raised.value.error_msg)
    assert "***" in str(raised.value.error_msg)
