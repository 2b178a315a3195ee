"""The credential chain: environment, IAM user, profile file, ECS metadata (served by the
simulator on loopback; 169.254.169.254 is never contacted, see conftest), temporary keys
renewed before they expire and once on a 401 (issue 15)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.cli.main import main
from orchestrator.errors import AuthError, ConfigError
from orchestrator.exitcodes import ExitCode
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.client import CsbsClient
from orchestrator.service.credentials import (
    MetadataCredentials,
    credentials_from_env,
    resolve_credentials,
)
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import StaticToken
from orchestrator.simulator import Simulator
from orchestrator.simulator.app import METADATA, METADATA_TOKEN
from tests.conftest import MakeSimulator
from tests.helpers.runkit import fresh_items, task_for

pytestmark = pytest.mark.anyio

SECRET_AK = "AKFROMENV0123456789"
SECRET_SK = "sk-from-env-never-shown"


def _sim_clock(sim: Simulator) -> Callable[[], datetime]:
    """The client's clock on the simulator's time, so that its expiries mean the same."""
    return lambda: datetime.fromtimestamp(sim.clock.now(), UTC)


def _metadata_env(sim: Simulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUAWEICLOUD_SDK_A")}
    env.pop("HUAWEICLOUD_SDK_SK", None)
    env.pop("CSBS_AUTH_TOKEN", None)
    env["CSBS_METADATA_URL"] = sim.base_url + "/openstack/latest/securitykey"
    return env


async def test_the_environment_comes_first_and_the_source_is_logged(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=10) as sim:
        env = {
            **_metadata_env(sim),
            "HUAWEICLOUD_SDK_AK": SECRET_AK,
            "HUAWEICLOUD_SDK_SK": SECRET_SK,
        }
        with capture_logs() as logs:
            auth = await resolve_credentials(env)
        assert sim.counters.requests_for(METADATA, 200) == 0  # never asked
    assert isinstance(auth, AkSkSigner)
    assert [e["source"] for e in logs if e["event"] == "credentials.source"] == ["environment"]
    assert SECRET_SK not in repr(logs)


async def test_iam_user_then_profile_file(tmp_path: Path) -> None:
    env = {"CSBS_METADATA_URL": "off", "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "c")}
    token = StaticToken.__new__(StaticToken)
    assert await resolve_credentials(env, iam=lambda: token) is token
    (tmp_path / "c").write_text(
        f"[basic]\nak = {SECRET_AK}\nsk = {SECRET_SK}\nsecurity_token = tok-123\n"
    )
    with capture_logs() as logs:
        auth = await resolve_credentials(env)
    assert isinstance(auth, AkSkSigner)
    assert "security_token=Secret('***')" in repr(auth)
    assert [e["source"] for e in logs if e["event"] == "credentials.source"] == ["profile-file"]


async def test_no_source_is_one_clear_error_within_a_second_or_two(
    tmp_path: Path, closed_port: int
) -> None:
    env = {
        "HOME": str(tmp_path),
        "CSBS_METADATA_URL": f"http://127.0.0.1:{closed_port}/openstack/latest/securitykey",
    }
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        await resolve_credentials(env)
    assert time.monotonic() - started < 2.0
    text = str(caught.value)
    for tried in ("environment", "IAM user", "profile file", "ECS metadata", "no answer"):
        assert tried in text, tried
    assert "169.254.169.254" not in text  # the test's URL was the one tried


async def test_ecs_metadata_keys_sign_with_their_security_token(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30) as sim:
        with capture_logs() as logs:
            auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        assert isinstance(auth, MetadataCredentials)
        assert [e["source"] for e in logs if e["event"] == "credentials.source"] == ["ecs-metadata"]
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), auth) as client:
            task = task_for(sim, fresh_items(sim)[0])
            assert await client.replicate(task)
        assert sim.counters.requests_for(METADATA, 200) == 1
        secret = str(auth._key.sk.reveal())  # what must never reach a log line
    assert secret not in repr(logs)
    assert secret not in repr(auth)


async def test_temporary_keys_are_renewed_before_they_expire(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30, temp_key_ttl_s=3600) as sim:
        auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), auth) as client:
            project = sim.state.projects[0].id
            await client.count_items(project)
            sim.advance(3000)  # 50 min of 60: inside the renewal margin (a fifth of the life)
            await client.count_items(project)
            assert sim.counters.requests_for(METADATA, 200) == 2
            sim.advance(600)
            await client.count_items(project)  # the renewed key is good for another hour
            assert sim.counters.requests_for(METADATA, 200) == 2
            assert sim.counters.requests_for("unknown", 401) == 0


async def test_a_401_renews_once_then_the_request_goes_again(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=30) as sim:
        auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        assert isinstance(auth, MetadataCredentials)
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), auth) as client:
            project = sim.state.projects[0].id
            await client.count_items(project)
            sim.auth.revoke_key(auth._key.ak)  # the agency's key is withdrawn
            assert await client.count_items(project) >= 0
            assert sim.counters.requests_for(METADATA, 200) == 2
            # A key the metadata service cannot renew is final: no loop of 401s.
            sim.auth.revoke_key(auth._key.ak)
            await sim_stop_metadata(sim, auth)
            with pytest.raises(AuthError, match="could not be renewed"):
                await client.count_items(project)


async def sim_stop_metadata(sim: Simulator, auth: MetadataCredentials) -> None:
    """Point the credentials at a metadata URL that no longer answers."""
    from orchestrator.service.credentials import fetch_metadata_key

    async def gone() -> object:
        return await fetch_metadata_key(sim.base_url + "/no/such/metadata")

    auth._fetch = gone  # type: ignore[assignment]


def test_the_cli_without_any_credentials_exits_2_listing_what_it_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "CSBS_AUTH_TOKEN",
        "CSBS_IAM_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "checkpoint_item_id,project_id,destination_region,destination_project_id\n"
        f"{'a' * 8}-aaaa-4aaa-8aaa-{'a' * 12},{'b' * 32},cn-south-1,{'c' * 32}\n"
    )
    started = time.monotonic()
    code = main(
        [
            "run",
            "--manifest",
            str(manifest),
            "--ledger",
            str(tmp_path / "l.jsonl"),
            "--endpoint",
            "http://127.0.0.1:1",
            "--no-progress",
        ]
    )
    assert time.monotonic() - started < 5.0
    out = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert "no credentials found" in out.out + out.err
    assert "ECS metadata" in out.out + out.err
    assert "Traceback" not in out.out + out.err


async def test_the_simulator_wants_the_security_token_of_a_temporary_key(
    make_simulator: MakeSimulator,
) -> None:
    async with make_simulator(items=10) as sim:
        auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        assert isinstance(auth, MetadataCredentials)
        bare = AkSkSigner(auth._key.ak, auth._key.sk)  # the temporary key without its token
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), bare) as client:
            with pytest.raises(AuthError, match="x-security-token"):
                await client.count_items(sim.state.projects[0].id)
        sim.advance(86400)  # past expires_at, for a client that never renews
        stale = AkSkSigner(auth._key.ak, auth._key.sk, security_token=auth._key.token)
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), stale) as client:
            with pytest.raises(AuthError, match="expired"):
                await client.count_items(sim.state.projects[0].id)


@pytest.mark.parametrize(("tokens", "asked"), [("required", 1), ("optional", 1), ("off", 0)])
async def test_the_metadata_session_token_is_used_where_the_service_has_one(
    make_simulator: MakeSimulator, tokens: str, asked: int
) -> None:
    """As the SDK: PUT a session token first, send it with the key request; a service with
    no tokens (404) is asked without one."""
    async with make_simulator(items=10, metadata_tokens=tokens) as sim:
        auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        assert isinstance(auth, MetadataCredentials)
        assert sim.counters.requests_for(METADATA_TOKEN, 200) == asked
        assert sim.counters.requests_for(METADATA, 200) == 1
        if tokens == "required":
            async with (
                aiohttp.ClientSession() as session,
                session.get(sim.base_url + "/openstack/latest/securitykey") as resp,
            ):
                assert resp.status == 401  # without the session token


async def test_many_requests_refused_together_renew_once(make_simulator: MakeSimulator) -> None:
    """Single-flight: twenty requests refused with a withdrawn key cause one renewal."""
    async with make_simulator(items=10) as sim:
        auth = await resolve_credentials(_metadata_env(sim), clock=_sim_clock(sim))
        assert isinstance(auth, MetadataCredentials)
        async with CsbsClient(ClientSettings(endpoint=sim.base_url), auth) as client:
            project = sim.state.projects[0].id
            await client.count_items(project)
            sim.auth.revoke_key(auth._key.ak)
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(client.count_items, project)
        assert sim.counters.requests_for(METADATA, 200) == 2


# -- credentials from the environment ----------------------------------------------------------

AK = "HPUAEXAMPLEAK0123456"
SK = "sk-Very-Secret-0123456789abcdefghij"
TOKEN = "sec-token-" + "Q" * 200  # real ones are long base64-ish strings


def test_ak_sk_from_env() -> None:
    auth = credentials_from_env({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": f" {SK}\n"})
    assert isinstance(auth, AkSkSigner)
    assert SK not in repr(auth)


def test_token_from_env() -> None:
    assert isinstance(credentials_from_env({"CSBS_AUTH_TOKEN": "tok"}), StaticToken)


def test_nothing_in_env_means_no_authenticator() -> None:
    assert credentials_from_env({"HUAWEICLOUD_SDK_AK": "  ", "OTHER": "x"}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HUAWEICLOUD_SDK_AK": AK}, "HUAWEICLOUD_SDK_SK is not"),
        ({"HUAWEICLOUD_SDK_SK": SK}, "HUAWEICLOUD_SDK_AK is not"),
        (
            {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "CSBS_AUTH_TOKEN": "tok-x"},
            "keep one way",
        ),
        ({"HUAWEICLOUD_SDK_AK": "bad key", "HUAWEICLOUD_SDK_SK": SK}, "alphanumeric"),
    ],
)
def test_env_mistakes_are_config_errors_without_secrets(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        credentials_from_env(env)
    text = str(caught.value)
    for secret in (SK, "tok-x"):
        assert secret not in text


def test_security_token_from_env() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN,
    }
    auth = credentials_from_env(env)
    assert isinstance(auth, AkSkSigner)
    assert "security_token=Secret('***')" in repr(auth)
    with pytest.raises(ConfigError, match="belongs to a temporary AK/SK") as caught:
        credentials_from_env({"HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN})
    assert TOKEN not in str(caught.value)
