"""A TCP proxy on 127.0.0.1 between the tool and the simulator, to break the network on cue.

Modes (:meth:`NetProxy.set_mode`); entering any mode but ``pass`` drops the connections
already open, as a partition does to keep-alive connections:

==============  =====================================================================
``pass``        bytes flow both ways
``refuse``      nothing listens on the port: connections are refused
``blackhole``   connections are accepted and the request read, but nothing ever answers
``cut``         requests reach the service; each answer is cut a few bytes into its body
``trickle``     answers arrive ``trickle_bytes`` at a time, ``trickle_delay_s`` apart
==============  =====================================================================

Import as ``from netproxy import NetProxy``; use as ``async with NetProxy(port) as proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal, Self

__all__ = ["Mode", "NetProxy"]

Mode = Literal["pass", "refuse", "blackhole", "cut", "trickle"]
_CHUNK = 65536
_HEADER_END = b"\r\n\r\n"


class NetProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.port = 0
        self.trickle_bytes = 16
        self.trickle_delay_s = 0.01
        self.cut_after_body_bytes = 3
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        await self._listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_server()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def set_mode(self, mode: Mode) -> None:
        if mode != "pass":
            self._drop_all()
        if mode == "refuse":
            await self._close_server()
        elif self._server is None:
            await self._listen()
        self.mode = mode

    # --- internals ------------------------------------------------------------------------

    async def _listen(self) -> None:
        # The same port again after ``refuse``: the tool's endpoint does not change.
        self._server = await asyncio.start_server(
            self._accepted, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _drop_all(self) -> None:
        for writer in list(self._open):
            _abort(writer)
        self._open.clear()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(writer)
        try:
            if self.mode == "blackhole":
                while await reader.read(_CHUNK):
                    pass  # swallow the request; never answer
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._open.add(up_writer)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, answers=False),
                    self._pump(up_reader, writer, answers=True),
                )
            finally:
                self._open.discard(up_writer)
                _abort(up_writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            _abort(writer)
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool
    ) -> None:
        seen = b""  # the answer so far, while looking for the end of its headers (cut mode)
        try:
            while data := await reader.read(_CHUNK):
                if answers and self.mode == "cut":
                    seen += data
                    end = seen.find(_HEADER_END)
                    if end < 0:
                        continue
                    writer.write(seen[: end + len(_HEADER_END) + self.cut_after_body_bytes])
                    await writer.drain()
                    _abort(writer)
                    return
                if answers and self.mode == "trickle":
                    for i in range(0, len(data), self.trickle_bytes):
                        writer.write(data[i : i + self.trickle_bytes])
                        await writer.drain()
                        await asyncio.sleep(self.trickle_delay_s)
                    continue
                if self.mode == "blackhole":
                    continue  # a partition that came while the connection was open
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
