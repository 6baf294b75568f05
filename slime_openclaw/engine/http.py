"""A lean HTTP/1.1 client for the engine's serving path: a keep-alive pool and streamed bodies.

``EngineClient`` sends every gateway turn to the engine and reads its token stream back, so
the client's cost per request and per streamed chunk is the gateway's overhead. Weighed
against the best-tuned library clients in one run (``benchmarks/gateway_overhead.py
--relay-floor --loop both --relay-clients aiohttp httpcore --concurrency 1 64 --requests
256``: a byte relay over each client, paths alternated, 2 loaded cores), the relay's CPU per
request at c=64 was 0.44 ms over this client, 0.58 ms over aiohttp's (one session, no
per-request timeout objects, ``auto_decompress=False``, raw ``iter_any`` reads) and 7.2 ms
over httpcore's pool (1.83 / 1.98 / 4.05 ms at c=1); an earlier run, 0.49 / 0.69 / 5.7 ms.
That margin, a quarter of the relay's whole cost and an eighth of the gateway's, is why it
is kept. It does what the engine's API needs and no more: ``GET``/``POST`` with a byte body, responses framed by
``Content-Length``, chunked transfer encoding or end of connection, bodies read whole or as
the pieces arrive (``chunks``, or ``take``/``wait`` without a generator), connections kept
alive and reused.

Failures: ``ConnectError`` (an ``OSError``) when no connection can be made within the
connect timeout, ``TimeoutError`` when a read waits longer than its timeout (checked by one
timer per pool, engine/http_watchdog.py: at most a quarter of the timeout, or 1 s, late),
``ConnectionError`` when the server drops the connection mid-response, ``ProtocolError``
for a malformed response. A request on a reused keep-alive connection that the server
closed while idle (it got no byte of an answer) is sent once more on a new connection:
the server never read it.

Not supported, because no engine API needs them: TLS client certificates, proxies,
redirects, compression, ``Expect: 100-continue``, pipelining.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, Coroutine, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from slime_openclaw.engine.http_framing import ProtocolError, parse_head, take_chunks
from slime_openclaw.engine.http_watchdog import Watchdog


class ConnectError(OSError):
    """No connection to the server could be made."""


_MAX_HEAD = 64 * 1024


class _Connection(asyncio.Protocol):
    """One TCP connection: buffers what arrives and wakes the one reader waiting for it."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = 0.0
        self.deadline = 0.0
        """When the read waiting now times out (loop time; the watchdog checks it)."""
        self._waiter: asyncio.Future[None] | None = None
        self._watchdog = watchdog

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """The watchdog found the read waiting past its deadline."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("no data from the server within the read timeout"))

    async def wait(self, timeout: float | None) -> None:
        """Until more data arrived or the connection ended (``TimeoutError`` after ``timeout``)."""
        if self.closed:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if timeout is not None:
            self._watchdog.watch(self, timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            if timeout is not None:
                self._watchdog.waiting.discard(self)

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpResponse:
    """A response whose head has arrived; its body is read with ``read`` or ``chunks``.

    Use it as an async context manager (or call ``close``): a body left unread closes the
    connection instead of returning it to the pool.
    """

    def __init__(self, pool: HttpPool, conn: _Connection, status: int, reason: str, headers: dict[str, str],
                 read_timeout: float | None):
        self.status = status
        self.reason = reason
        self.headers = headers
        """Header names in lower case (a repeated header keeps its last value)."""
        self._pool = pool
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self._draining = False
        self._ended = False
        """The whole body has been taken from the connection (it may still be in the caller's hands)."""
        self._chunked = headers.get("transfer-encoding", "").lower().endswith("chunked")
        length: str | None = "0" if status in (204, 304) else headers.get("content-length")
        try:
            self._remaining = None if self._chunked or length is None else int(length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {str(length)[:40]!r}") from None
        self._reusable = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._remaining is not None)

    async def __aenter__(self) -> HttpResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([piece async for piece in self.chunks()])

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body in the pieces that arrived together (chunk framing removed)."""
        while True:
            piece = self.take()
            if piece is None:
                await self.wait()
            elif piece:
                yield piece
            else:
                return

    def take(self) -> bytes | None:
        """The body's bytes that arrived since the last call (chunk framing removed), ``b""``
        once the body has ended, None while nothing new is here yet (then ``await wait()``).

        With ``wait`` it is ``chunks`` without a generator: a reader that runs once per streamed
        piece (``EngineClient.stream``) calls it directly. ``ConnectionError`` when the server
        closed the connection before the body's end, ``ProtocolError`` for bad chunk framing.
        """
        conn = self._conn
        if conn is None:
            return b""
        buf = conn.buffer
        if self._chunked:
            pieces, done = take_chunks(buf) if buf else ([], False)
            if done:
                self._ended = True
                self._release()
            if pieces:
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if done:
                return b""
        elif self._remaining is not None:
            if self._remaining == 0:
                self._ended = True
                self._release()
                return b""
            if buf:
                if len(buf) <= self._remaining:
                    piece = bytes(buf)
                    buf.clear()
                else:
                    piece = bytes(buf[:self._remaining])
                    del buf[:self._remaining]
                self._remaining -= len(piece)
                if self._remaining == 0:
                    self._ended = True
                    self._release()
                return piece
        elif buf:
            piece = bytes(buf)
            buf.clear()
            return piece
        elif conn.closed:  # the body ends with the connection
            self._release()
            return b""
        if conn.closed:
            raise ConnectionError("the server closed the connection before the response ended")
        return None

    def wait(self) -> Coroutine[Any, Any, None]:
        """Until more of the body arrived or the connection ended (``TimeoutError`` after the read timeout)."""
        conn = self._conn
        return conn.wait(self._read_timeout) if conn is not None else _nothing()

    def finish_in_background(self, timeout: float = 2.0) -> None:
        """The caller has all it needs although the body has not ended (an SSE stream's last event
        came, its end marker may still be on the way): read the rest in the background, then
        reuse the connection (or close it if the rest takes longer than ``timeout``)."""
        conn = self._conn
        if conn is None:
            return
        if self._ended:
            self._release()
            return
        if self._chunked:
            _, done = take_chunks(conn.buffer)
            if done:
                self._release()
                return
        elif self._remaining is not None and len(conn.buffer) >= self._remaining:
            del conn.buffer[:self._remaining]
            self._remaining = 0
            self._release()
            return
        self._draining = True
        self._pool.spawn(self._drain(timeout))

    async def _drain(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.read(), timeout)
        except (OSError, TimeoutError, ProtocolError):
            pass
        finally:
            self._abandon()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._reusable and not conn.buffer:
                self._pool.release(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Close the connection unless the body was read to its end (or is being read in the background)."""
        if not self._draining:
            self._abandon()

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class HttpPool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin."""

    def __init__(self, base_url: str, *, connect_timeout: float = 2.0, headers: Mapping[str, str] | None = None,
                 keepalive_expiry: float = 4.0, max_idle: int = 256):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.keepalive_expiry = keepalive_expiry
        """Idle connections older than this are not reused (servers close them: uvicorn after 5 s)."""
        self.max_idle = max_idle
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = self.host if default_port else f"{self.host}:{self.port}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._fixed_headers = f"Host: {host}\r\nAccept: */*\r\n{extra}".encode("latin-1")
        self._idle: list[_Connection] = []
        self._watchdog = Watchdog()
        self._background: set[asyncio.Task[None]] = set()

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      read_timeout: float | None = None, content_type: str = "application/json",
                      headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Send a request (``headers``: extra ones for this request only); return once the
        response's head arrived."""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self._fixed_headers
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode("latin-1")
        message = head + b"\r\n" + (body or b"")
        conn, reused = await self._acquire()
        try:
            conn.transport.write(message)  # type: ignore[union-attr]
            return await self._read_head(conn, read_timeout)
        except _ClosedBeforeAnswer:
            conn.close()
            if not reused:
                raise ConnectionError("the server closed the connection without answering") from None
        except BaseException:
            conn.close()
            raise
        conn = await self._connect()  # the server had closed the idle connection: it never read the request
        try:
            conn.transport.write(message)  # type: ignore[union-attr]
            return await self._read_head(conn, read_timeout)
        except _ClosedBeforeAnswer:
            conn.close()
            raise ConnectionError("the server closed the connection without answering") from None
        except BaseException:
            conn.close()
            raise

    async def _read_head(self, conn: _Connection, read_timeout: float | None) -> HttpResponse:
        while True:
            buf = conn.buffer
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buf[:end]).decode("latin-1")
                del buf[:end + 4]
                status, reason, headers = parse_head(head)
                if 100 <= status < 200:  # an interim answer: the real one follows
                    continue
                return HttpResponse(self, conn, status, reason, headers, read_timeout)
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("response head larger than 64 KiB")
            if conn.closed:
                if not buf:
                    raise _ClosedBeforeAnswer
                raise ConnectionError("the server closed the connection in the middle of the response head")
            await conn.wait(read_timeout)

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable() and not conn.buffer and now - conn.idle_since < self.keepalive_expiry:
                return conn, True
            conn.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(self._watchdog), self.host, self.port, ssl=self._ssl), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectError(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectError(exc.errno, exc.strerror or str(exc)) from exc
        conn.transport = conn.transport or cast(asyncio.Transport, transport)  # uvloop: connection_made comes later
        return conn

    def release(self, conn: _Connection) -> None:
        """Return a connection whose response was read completely."""
        if len(self._idle) >= self.max_idle or not conn.usable():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a response's background drain, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close(self) -> None:
        """Close the idle connections and stop background drains (responses still being read close
        theirs when done)."""
        idle, self._idle = self._idle, []
        self._watchdog.stop()
        for conn in idle:
            conn.close()
        for task in list(self._background):
            task.cancel()


async def _nothing() -> None:
    return None


class _ClosedBeforeAnswer(Exception):
    """The connection ended before any byte of a response."""


__all__ = ["ConnectError", "HttpPool", "HttpResponse", "ProtocolError"]
