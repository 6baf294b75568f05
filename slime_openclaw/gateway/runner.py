"""The gateway's ``AppRunner``: connection timeouts, and OpenAI-style JSON even for the
errors aiohttp answers by itself.

A request aiohttp cannot parse (bad framing, an undecodable ``Content-Encoding`` caught
while parsing, oversized headers) never reaches the app's middleware: aiohttp answers it
with a plain-text 4xx built by ``RequestHandler.handle_error``. ``GatewayRunner`` makes its
server create handlers whose ``handle_error`` answers a 4xx with the same error JSON as
the app (``{"error": {"message", "type", "param", "code"}}``), naming the status only:
aiohttp's own message quotes the raw request bytes. Logging stays aiohttp's (redacted by
gateway/logs.py). The app itself is gateway/app.py.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _JsonErrorHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        if not 400 <= status < 500:
            return response
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "client error"
        body = {"error": {"message": f"malformed HTTP request ({status} {phrase})", "type": "invalid_request_error",
                          "param": None, "code": "malformed_http"}}
        json_response = web.Response(status=status, text=json.dumps(body), content_type="application/json")
        json_response.force_close()
        return json_response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer unparseable requests with error JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is web.Server:  # same state, one method more
            server.__class__ = _JsonErrorServer
        return server
