"""Reading a 2xx answer: a field missing or of the wrong kind is a transient error that quotes
the answer, scrubbed, for CSBS and CBR alike."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from orchestrator.errors import TransientApiError
from orchestrator.secret_set import MASK, SecretSet
from orchestrator.service.cbr import CbrClient
from orchestrator.service.client import CsbsClient
from orchestrator.service.settings import ClientSettings
from tests.helpers.clientkit import raises, stub_server

SECRET = "echoed-secret-0123456789abcdef"


async def _bad_count(_: web.Request) -> web.Response:
    """A count that is not a number, beside a secret the server echoes."""
    return web.Response(
        body=orjson.dumps({"count": "many", "echo": SECRET}), content_type="application/json"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("client_class", [CsbsClient, CbrClient])
async def test_a_field_of_the_wrong_kind_quotes_the_scrubbed_answer(
    client_class: type[CsbsClient],
) -> None:
    async with stub_server(_bad_count) as url:
        client = client_class(ClientSettings(endpoint=url), secrets=SecretSet([SECRET]))
        async with client:
            exc = await raises(TransientApiError, client.count_items("p"), SECRET)
    assert exc.http_status == 200
    assert "'count'" in str(exc)
    assert exc.error_msg is not None
    assert "'count': 'many'" in exc.error_msg
    assert MASK in exc.error_msg
