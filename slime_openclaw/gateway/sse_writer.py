"""A streamed answer's writes to the client, past aiohttp's per-write path while the socket keeps up.

A streamed chat completion writes once per engine read: about once per token. aiohttp's
``StreamResponse.write`` runs two coroutines, their checks and the chunk header's formatting
for each write before the transport gets the bytes. ``SseWriter.write`` frames the bytes as
aiohttp would (HTTP/1.1 chunked encoding; as they are for an HTTP/1.0 client, whose body ends
with the connection) and hands them to the connection's transport itself when nothing is
waiting in the transport's buffer: what aiohttp's own write does then, since it waits for the
socket only past 64 KiB written. Otherwise (a client that reads slowly, a connection that is
closing or gone) the write goes through aiohttp, with its flow control and its errors.

The first write (the headers aiohttp holds back until then, with the first events) always
goes through aiohttp, as does the caller's ``response.write_eof`` (the chunked body's end),
so aiohttp's state of the response stays its own; bytes written here are missing only from its count of the
body's length (``body_length``, for access logs, which the gateway does not keep).
"""

from __future__ import annotations

import asyncio

from aiohttp import web


class SseWriter:
    """Writes the body of one prepared ``StreamResponse`` (its end: the response's own ``write_eof``)."""

    def __init__(self, http: web.Request, response: web.StreamResponse):
        self._http = http
        self._response = response
        self._transport: asyncio.Transport | None = None
        """Set after aiohttp's first non-empty write (the headers are out), when the body may be written here."""
        self._chunked = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` now (``ConnectionError`` when the client is gone)."""
        transport = self._transport
        if transport is not None and data and not transport.get_write_buffer_size() and not transport.is_closing():
            transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
            return
        response = self._response
        await response.write(data)
        if transport is None and data and not response.compression and response.content_length is None:
            self._transport = self._http.transport
            self._chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
