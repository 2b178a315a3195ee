"""Token authenticators: a static token, and IAM password tokens renewed once for all workers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
import orjson
import pytest
import yarl

from orchestrator.errors import AuthError, ConfigError
from orchestrator.service.auth import Secret
from orchestrator.service.tokens import IamPasswordToken, StaticToken

PASSWORD = "p4ssw0rd-Do-Not-Leak"
FIXED = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


async def _no_post(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
    raise AssertionError("no round trip expected")


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_static_token_is_sent_and_cannot_be_renewed() -> None:
    auth = StaticToken(Secret("tok-123"))
    headers: dict[str, str] = {}
    url = yarl.URL("https://h/v1/p")
    await auth.apply(_no_post, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert headers == {"X-Auth-Token": "tok-123", "X-Project-Id": "p"}
    assert await auth.on_unauthorized(_no_post, "p", headers) is False
    assert "tok-123" not in repr(auth)


class FakeIam:
    """A stand-in for the client's ``post``: counts fetches, hands out numbered tokens."""

    def __init__(self, *, lifetime_s: float = 3600.0, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.lifetime_s = lifetime_s
        self.fail = fail

    async def __call__(self, url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        await anyio.lowlevel.checkpoint()  # let concurrent callers interleave, as a round trip
        self.calls.append((url, orjson.loads(body)))
        if self.fail is not None:
            raise self.fail
        issued = datetime(2030, 1, 1, tzinfo=UTC)  # IAM's clock need not be ours
        expires = issued + timedelta(seconds=self.lifetime_s)
        answer = {
            "token": {
                "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        }
        return {"X-Subject-Token": f"token-{len(self.calls)}"}, orjson.dumps(answer)


class FakeClock:
    def __init__(self) -> None:
        self.now = FIXED

    def __call__(self) -> datetime:
        return self.now


def _iam(clock: FakeClock | None = None, **kw: float) -> IamPasswordToken:
    return IamPasswordToken(
        "https://iam.example/",
        "alice",
        Secret(PASSWORD),
        "acme",
        clock=clock or FakeClock(),
        **kw,
    )


async def _apply(auth: IamPasswordToken, post: FakeIam, project: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    url = yarl.URL(f"https://h/v1/{project}")
    await auth.apply(post, method="GET", url=url, headers=headers, body=b"", project_id=project)
    return headers


@pytest.mark.anyio
async def test_iam_token_is_fetched_once_per_project_with_a_scoped_password_body() -> None:
    iam, auth = FakeIam(), _iam()
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    assert (await _apply(auth, iam, "p2")) == {"X-Auth-Token": "token-2", "X-Project-Id": "p2"}
    assert len(iam.calls) == 2
    url, body = iam.calls[0]
    assert url == "https://iam.example/v3/auth/tokens"
    assert body == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": PASSWORD, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": "p1"}},
        }
    }
    assert PASSWORD not in repr(auth)


@pytest.mark.anyio
async def test_iam_token_is_renewed_before_it_expires() -> None:
    clock, iam = FakeClock(), FakeIam(lifetime_s=3600)
    auth = _iam(clock, refresh_before_s=300)
    await _apply(auth, iam, "p1")
    clock.now += timedelta(seconds=3299)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    clock.now += timedelta(seconds=2)  # inside the 300 s margin
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"


@pytest.mark.anyio
async def test_short_lived_tokens_renew_at_four_fifths_of_their_life() -> None:
    clock, iam = FakeClock(), FakeIam(lifetime_s=10)
    auth = _iam(clock, refresh_before_s=300)
    await _apply(auth, iam, "p1")
    clock.now += timedelta(seconds=7.9)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-1"
    clock.now += timedelta(seconds=0.2)
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"


@pytest.mark.anyio
async def test_many_workers_hitting_a_401_cause_one_renewal() -> None:
    iam, auth = FakeIam(), _iam()
    used = await _apply(auth, iam, "p1")
    answers: list[bool] = []

    async def worker() -> None:
        answers.append(await auth.on_unauthorized(iam, "p1", used))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(worker)
    assert answers == [True] * 50
    assert len(iam.calls) == 2  # the first token, then exactly one renewal
    assert (await _apply(auth, iam, "p1"))["X-Auth-Token"] == "token-2"
    # A late 401 for the old token reuses the renewed one instead of fetching again.
    assert await auth.on_unauthorized(iam, "p1", used) is True
    assert len(iam.calls) == 2


@pytest.mark.anyio
async def test_a_401_for_the_current_token_renews_it() -> None:
    iam, auth = FakeIam(), _iam()
    first = await _apply(auth, iam, "p1")
    assert await auth.on_unauthorized(iam, "p1", first) is True
    second = await _apply(auth, iam, "p1")
    assert second["X-Auth-Token"] == "token-2"
    assert await auth.on_unauthorized(iam, "p1", second) is True
    assert len(iam.calls) == 3


@pytest.mark.anyio
async def test_a_refused_password_surfaces_as_auth_error() -> None:
    iam = FakeIam(fail=AuthError("credentials refused: POST /v3/auth/tokens: HTTP 401"))
    with pytest.raises(AuthError) as caught:
        await _apply(_iam(), iam, "p1")
    assert PASSWORD not in str(caught.value)


@pytest.mark.anyio
async def test_a_refused_password_is_asked_once_however_many_workers_wait() -> None:
    iam, auth = FakeIam(fail=AuthError("IAM refused the password")), _iam()

    async def one_worker() -> None:
        with pytest.raises(AuthError):
            await _apply(auth, iam, "p1")

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one_worker)
    with pytest.raises(AuthError):
        await _apply(auth, iam, "p2")  # another project: the same password, still refused
    assert len(iam.calls) == 1


@pytest.mark.anyio
async def test_an_answer_without_a_token_is_an_auth_error() -> None:
    async def no_token(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        return {}, b"{}"

    with pytest.raises(AuthError, match="X-Subject-Token"):
        await _apply(_iam(), no_token, "p1")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_unreadable_expiry_falls_back_to_the_default_lifetime() -> None:
    clock = FakeClock()
    calls = 0

    async def odd_body(url: str, body: bytes) -> tuple[Mapping[str, str], bytes]:
        nonlocal calls
        calls += 1
        return {"X-Subject-Token": f"t{calls}"}, b"<html>not json</html>"

    auth = IamPasswordToken(
        "https://iam", "u", Secret(PASSWORD), "d", clock=clock, default_lifetime_s=100
    )
    headers: dict[str, str] = {}
    url = yarl.URL("https://h/v1/p")
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    clock.now += timedelta(seconds=79)
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert calls == 1
    clock.now += timedelta(seconds=2)
    await auth.apply(odd_body, method="GET", url=url, headers=headers, body=b"", project_id="p")
    assert calls == 2


def test_iam_needs_every_field() -> None:
    with pytest.raises(ConfigError, match="IAM"):
        IamPasswordToken("https://iam", "u", Secret(""), "d")
