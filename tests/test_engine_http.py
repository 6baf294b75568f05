"""engine/http.py: the keep-alive HTTP/1.1 client, against a real aiohttp server and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from slime_openclaw.engine.http import ConnectError, HttpPool, ProtocolError
from tests.waiting import eventually


class Counting:
    """An aiohttp app that counts the connections it accepted."""

    def __init__(self) -> None:
        self.transports: list[object] = []
        self.bodies: list[bytes] = []

    @property
    def connections(self) -> int:
        return len({id(t) for t in self.transports})  # the list keeps them alive: ids stay unique

    @web.middleware
    async def seen(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        self.transports.append(request.transport)
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.seen])
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/empty", self.empty)
        app.router.add_get("/slow", self.slow)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        return web.Response(body=body[::-1], headers={"X-Auth": request.headers.get("Authorization", "")})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(5):
            await response.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.002)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def empty(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="late")


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpPool, Counting]]:
    """A pool (sending ``Authorization: Bearer k``) to a counting aiohttp server."""
    counting = Counting()
    runner = web.AppRunner(counting.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pool = HttpPool(f"http://127.0.0.1:{runner.addresses[0][1]}", headers={"Authorization": "Bearer k"})
    try:
        yield pool, counting
    finally:
        pool.close()
        await runner.cleanup()


async def test_post_with_content_length_and_keep_alive(server: tuple[HttpPool, Counting]) -> None:
    pool, counting = server
    for i in range(5):
        async with await pool.request("POST", "/echo", f"body-{i}".encode()) as response:
            assert response.status == 200
            assert response.headers["x-auth"] == "Bearer k"
            assert await response.read() == f"body-{i}".encode()[::-1]
    assert counting.bodies == [f"body-{i}".encode() for i in range(5)]
    assert counting.connections == 1


async def test_chunked_stream_arrives_in_pieces_and_the_connection_is_reused(server: tuple[HttpPool, Counting]) -> None:
    pool, counting = server
    for _ in range(3):
        async with await pool.request("GET", "/stream") as response:
            pieces = [piece async for piece in response.chunks()]
        assert b"".join(pieces) == b"".join(f"data: {i}\n\n".encode() for i in range(5)) + b"data: [DONE]\n\n"
        assert len(pieces) > 1  # streamed, not buffered to the end
    assert counting.connections == 1


async def test_finish_in_background_reads_the_tail_and_reuses_the_connection(server: tuple[HttpPool, Counting]) -> None:
    pool, counting = server
    for _ in range(3):
        async with await pool.request("GET", "/stream") as response:
            body = response.chunks()
            first = await anext(body)
            assert first.startswith(b"data: 0")
            response.finish_in_background()
            await body.aclose()
        # the rest of the stream is read off the connection in the background, which goes back to the pool
        await eventually(lambda: pool._idle, "the drained connection is back in the pool")
    assert counting.connections == 1


async def test_unread_body_closes_the_connection(server: tuple[HttpPool, Counting]) -> None:
    pool, counting = server
    for _ in range(2):
        async with await pool.request("GET", "/stream") as response:
            assert response.status == 200  # body left unread
    assert counting.connections == 2


async def test_no_content_has_an_empty_body(server: tuple[HttpPool, Counting]) -> None:
    pool, _ = server
    async with await pool.request("GET", "/empty") as response:
        assert response.status == 204
        assert await response.read() == b""


async def test_read_timeout(server: tuple[HttpPool, Counting]) -> None:
    pool, _ = server
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/slow", read_timeout=0.1)


async def test_one_watchdog_times_out_each_waiting_read_and_rests_when_none_waits(
        server: tuple[HttpPool, Counting]) -> None:
    pool, _ = server
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(pool.request("GET", "/slow", read_timeout=0.2) for _ in range(3)),
                                   return_exceptions=True)
    elapsed = asyncio.get_running_loop().time() - started
    assert all(isinstance(r, TimeoutError) for r in results)
    assert 0.2 <= elapsed < 0.9  # within a tick (a quarter of the timeout) after it, not the server's 1 s
    watchdog = pool._watchdog
    await eventually(lambda: watchdog._timer is None, "the watchdog at rest", timeout_s=2.0)  # no timer runs
    async with await pool.request("POST", "/echo", b"abc", read_timeout=0.2) as response:
        assert await response.read() == b"cba"  # a read that gets its data in time is not expired


def test_the_pool_runs_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport subclasses and it calls ``connection_made``
    after ``create_connection`` returns: both once broke the pool."""
    pytest.importorskip("uvloop")
    from slime_openclaw.gateway import eventloop

    async def main() -> None:
        counting = Counting()
        runner = web.AppRunner(counting.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        pool = HttpPool(f"http://127.0.0.1:{runner.addresses[0][1]}")
        try:
            for _ in range(2):
                async with await pool.request("GET", "/stream") as response:
                    body = b"".join([piece async for piece in response.chunks()])
                assert body.endswith(b"data: [DONE]\n\n")
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/slow", read_timeout=0.1)
            assert counting.connections == 1  # one connection, kept alive, carried all three
        finally:
            pool.close()
            await runner.cleanup()

    assert eventloop.loop_name("uvloop") == "uvloop"
    eventloop.run(main(), loop="uvloop")


async def test_connect_refused_is_a_connect_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    pool = HttpPool(f"http://127.0.0.1:{port}", connect_timeout=1.0)
    with pytest.raises(ConnectError):
        await pool.request("GET", "/")


def test_bad_urls_are_refused() -> None:
    for bad in ("ftp://host/", "127.0.0.1:80", "http://"):
        with pytest.raises(ValueError):
            HttpPool(bad)


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[tuple[HttpPool, list[int]]]:
    """A pool to a server that answers each request with ``reply(reader, writer, connection_number)``,
    and the numbers of the connections it accepted."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen))
        try:
            await reply(reader, writer, len(seen) - 1)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    pool = HttpPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        yield pool, seen
    finally:
        pool.close()
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def test_a_connection_the_server_closed_while_idle_is_retried_once() -> None:
    """The server closes a kept-alive connection just as the pool reuses it: the request was
    never answered, so it goes again once on a new connection."""
    unanswered: list[int] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            await _read_request(reader)  # the next request on this connection: closed unanswered
            unanswered.append(n)

    async with raw_server(reply) as (pool, seen):
        for _ in range(3):
            async with await pool.request("GET", "/") as response:
                assert await response.read() == b"ok"
        assert len(seen) == 3 and unanswered == [0, 1]  # requests 2 and 3 each went out twice


@pytest.mark.parametrize("answer, error", [
    (b"SPDY/3 200 OK\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 abc OK\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", ConnectionError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", ConnectionError),
    (b"HTTP/1.1 200 OK\r\nContent-", ConnectionError),
    (b"", ConnectionError),
])
async def test_malformed_or_cut_answers(answer: bytes, error: type[Exception]) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with raw_server(reply) as (pool, _):
        with pytest.raises(error):
            async with await pool.request("GET", "/", read_timeout=5) as response:
                await response.read()


async def test_http10_and_close_delimited_bodies() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with raw_server(reply) as (pool, seen):
        for _ in range(2):
            async with await pool.request("GET", "/") as response:
                assert await response.read() == b"until the end"
        assert len(seen) == 2  # never reused


async def test_interim_answers_are_skipped() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew")
        await writer.drain()

    async with raw_server(reply) as (pool, _), await pool.request("POST", "/", b"{}") as response:
        assert (response.status, response.reason) == (201, "Created")
        assert await response.read() == b"new"


@pytest.mark.parametrize("head, parts, reused", [
    (b"Transfer-Encoding: chunked\r\n", [b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"], True),
    (b"Content-Length: 5\r\n", [b"abc", b"de"], True),
    (b"Connection: close\r\n", [b"abc", b"de"], False),
])
async def test_take_gives_what_arrived_none_while_waiting_and_empty_at_the_end(
        head: bytes, parts: list[bytes], reused: bool) -> None:
    """``take``/``wait``, the generator-free way to read a body as it arrives, for each framing."""
    go = [asyncio.Event() for _ in parts]

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n")
        for event, part in zip(go, parts, strict=True):
            await event.wait()
            writer.write(part)
            await writer.drain()
        if reused:
            await _read_request(reader)  # the connection went back to the pool: the next request comes on it
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.read()

    async with raw_server(reply) as (pool, seen):
        response = await pool.request("GET", "/")
        assert response.take() is None  # nothing of the body yet
        got: list[bytes] = []
        for event in go:  # one part at a time: each read gives what came, None until it came
            event.set()
            while (piece := response.take()) is None:
                await asyncio.wait_for(response.wait(), 5)
            got.append(piece)
        while piece:  # the end (a chunked body's last chunk may have been the last part read)
            while (piece := response.take()) is None:
                await asyncio.wait_for(response.wait(), 5)
            got.append(piece)
        assert b"".join(got) == b"abcde" and got[0] == b"abc" and response.take() == b""
        response.close()
        async with await pool.request("GET", "/") as again:
            assert await again.read() == (b"ok" if reused else b"abcde")
        assert len(seen) == (1 if reused else 2)  # the ended body gave its connection back to the pool
