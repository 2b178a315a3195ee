"""A deliberately hostile CSBS/IAM imitation on 127.0.0.1, served from its own thread so that
tests can call the CLI's blocking ``main(argv)`` against it.

Each route answers what a misbehaving or malicious server could: escape codes in request ids
and item ids, spreadsheet formulas as ids, the caller's own credentials echoed back in error
messages, redirects elsewhere. The server records every request it got (method, path,
headers, body) so tests can assert what was, and was not, sent.
Import as ``from hostile import HostileServer, serve``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["ESC_CLEAR", "OSC_TITLE", "HostileServer", "Seen", "serve"]

ESC_CLEAR = "\x1b[2J\x1b[H"
OSC_TITLE = "\x1b]0;pwned\x07"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class HostileServer:
    base_url: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def serve(
    routes: Mapping[tuple[str, str], Handler], *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[HostileServer]:
    """Serve ``{(method, path pattern): handler}`` on 127.0.0.1 until the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    box: list[HostileServer] = []
    failure: list[BaseException] = []

    async def main() -> None:
        seen: list[Seen] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read()
            seen.append(Seen(request.method, request.path, dict(request.headers), body))
            return await handler(request)

        app = web.Application(middlewares=[record])
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        try:
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            scheme = "https" if ssl_context else "http"
            box.append(HostileServer(f"{scheme}://127.0.0.1:{port}", seen))
            ready.set()
            await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            raise
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(30) or failure:
            raise AssertionError(f"the hostile server did not start: {failure}")
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


async def capabilities(request: web.Request) -> web.Response:
    """A well-behaved answer to the preflight (``GET replication_capabilities``), so that a
    hostile route behind it is reached."""
    regions = [{"name": "cn-north-1", "replication_destinations": ["cn-east-2"]}]
    return web.json_response({"regions": regions})


#: The preflight's route, to put first in a route table that ends in a catch-all.
CAPABILITIES = ("GET", "/v1/{project}/replication_capabilities")
