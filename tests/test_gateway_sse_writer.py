"""gateway/sse_writer.py: the streamed body past aiohttp's write path, framed as aiohttp frames it.

A real aiohttp server streams events through ``SseWriter``; HTTP/1.1 clients (chunked
encoding, kept alive) and HTTP/1.0 clients (the body ends with the connection) read exactly
the events; writes go to the transport directly only while its buffer is empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from slime_openclaw.gateway.sse_writer import SseWriter

EVENTS = [b"data: {\"n\": %d}\n\n" % i for i in range(30)]


@asynccontextmanager
async def _server() -> AsyncIterator[tuple[str, list[tuple[int, int]]]]:
    """A server streaming EVENTS through SseWriter; per response: (direct writes, aiohttp writes)."""
    counts: list[tuple[int, int]] = []

    async def stream(http: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(http)
        writer = SseWriter(http, response)
        through_aiohttp = 0
        original = response.write

        async def counted(data: Any) -> None:
            nonlocal through_aiohttp
            through_aiohttp += 1
            await original(data)

        response.write = counted  # type: ignore[method-assign]
        for event in EVENTS[:-1]:
            await writer.write(event)
            await asyncio.sleep(0)
        await response.write_eof(EVENTS[-1])  # the body's end through aiohttp, as chat.py does
        counts.append((len(EVENTS) - 1 - through_aiohttp, through_aiohttp))
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", counts
    finally:
        await runner.cleanup()


async def test_http11_clients_get_the_events_chunked_and_the_connection_stays_open() -> None:
    async with _server() as (url, counts), aiohttp.ClientSession() as http:
        for _ in range(2):  # the second request reuses the kept-alive connection
            async with http.get(f"{url}/stream") as response:
                assert response.headers["Transfer-Encoding"] == "chunked"
                assert await response.read() == b"".join(EVENTS)
        direct, through_aiohttp = counts[-1]
        assert through_aiohttp >= 1 and direct >= 1  # the first write through aiohttp, later ones past it


async def test_http10_clients_get_the_events_until_the_connection_closes() -> None:
    async with _server() as (url, _):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /stream HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes after the body
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"chunked" not in head.lower()
        assert body == b"".join(EVENTS)


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class _Response:
    compression = False
    content_length = None

    def __init__(self) -> None:
        self.headers = {"Transfer-Encoding": "chunked"}
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


class _Request:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


async def test_writes_go_through_aiohttp_first_and_whenever_the_transport_is_not_keeping_up() -> None:
    transport, response = _Transport(), _Response()
    writer = SseWriter(_Request(transport), response)  # type: ignore[arg-type]
    await writer.write(b"")  # nothing written: the headers may still wait in aiohttp
    await writer.write(b"head")
    assert response.writes == [b"", b"head"] and transport.written == []
    await writer.write(b"0123456789abcdefX")
    assert transport.written == [b"11\r\n0123456789abcdefX\r\n"]  # chunk size in hex, as aiohttp frames it
    transport.buffered = 1  # the socket did not take everything: aiohttp's flow control decides
    await writer.write(b"slow")
    transport.buffered, transport.closing = 0, True  # a closing connection: aiohttp raises its error
    await writer.write(b"gone")
    assert response.writes[2:] == [b"slow", b"gone"] and len(transport.written) == 1
