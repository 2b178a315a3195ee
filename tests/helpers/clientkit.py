"""Helpers for the client tests: clients of a simulator, exceptions checked for secrets, and
a one-route loopback server for answers the simulator never gives."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from aiohttp import web

from orchestrator.errors import ApiError
from orchestrator.service.aksk import AkSkSigner
from orchestrator.service.auth import Secret
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import IamPasswordToken
from orchestrator.simulator import Simulator


def assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    """Neither the exception nor anything chained to it shows a secret."""
    seen: BaseException | None = exc
    while seen is not None:
        texts = [str(seen), repr(seen), *(str(a) for a in seen.args)]
        if isinstance(seen, ApiError):
            texts += [str(seen.error_msg), str(seen.error_code), str(seen.request_id)]
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"secret leaked in {type(seen).__name__}: {text}"
        seen = seen.__cause__ or seen.__context__


def sim_secrets(sim: Simulator) -> tuple[str, str]:
    return sim.config.sk, sim.config.password


def client_for(sim: Simulator, auth: Any = "aksk", **settings: Any) -> CsbsClient:
    """A client of ``sim``; AK/SK-signed unless another authenticator (or None) is given."""
    if auth == "aksk":
        auth = aksk(sim)
    return CsbsClient(ClientSettings(endpoint=sim.base_url, **settings), auth)


def aksk(sim: Simulator, sk: str | None = None) -> AkSkSigner:
    return AkSkSigner(sim.config.ak, Secret(sk or sim.config.sk))


def iam(sim: Simulator, password: str | None = None) -> IamPasswordToken:
    return IamPasswordToken(
        sim.base_url,
        sim.config.user,
        Secret(password or sim.config.password),
        sim.config.domain,
    )


E = TypeVar("E", bound=BaseException)


async def raises(kind: type[E], call: Awaitable[Any], *secrets: str) -> E:
    with pytest.raises(kind) as caught:
        await call
    assert_no_secrets(caught.value, *secrets)
    return caught.value


@asynccontextmanager
async def stub_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """A one-route loopback server for answers the simulator never gives."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
