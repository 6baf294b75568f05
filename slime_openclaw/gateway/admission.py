"""What a request must pass before the gateway does any work for it.

- ``check_host``: the ``Host`` header names the address the gateway is bound to, a
  loopback name, or one of the configured allowed hosts; anything else is a page on
  another origin that resolved its own name to us (DNS rebinding) and gets 403.
- ``check_json_content_type``: writes must say ``Content-Type: application/json``; a
  ``text/plain`` form post, the one kind of cross-site request a browser sends without
  asking first, gets 415.
- ``read_body``: reads the body within the size limit and the body timeout; a body the
  declared ``Content-Encoding`` cannot decode is the client's error (400), a client that
  hangs up mid-upload raises ``ClientGone`` (no answer, not a server error).

Errors are ``RequestError`` (OpenAI-style JSON through the app's middleware). This module
neither parses JSON nor checks keys (gateway/auth.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from aiohttp import web

from slime_openclaw.errors import RequestError
from slime_openclaw.gateway.auth import is_loopback

CLIENT_CLOSED = 499
"""Status under which requests whose client left are counted (nginx's convention)."""


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``), lower-cased."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, sep, port = value.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else value


def check_host(host_header: str | None, bound_host: str, allowed: Collection[str]) -> None:
    """Refuse a ``Host`` that is not ours (``*`` in ``allowed`` accepts any)."""
    if "*" in allowed:
        return
    name = host_name(host_header or "")
    if name and (is_loopback(name) or name == host_name(bound_host) or name in allowed):
        return
    raise RequestError(
        "the Host header does not name this gateway (add the name to the gateway's allowed hosts)",
        status=403, code="host_not_allowed",
    )


def check_json_content_type(http: web.Request) -> None:
    """Refuse a body that does not declare itself JSON."""
    if http.content_type != "application/json":
        raise RequestError(
            f"Content-Type must be application/json, not {http.content_type or 'absent'}",
            status=415, code="unsupported_media_type",
        )


async def read_body(http: web.Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """The request body, decoded per ``Content-Encoding``; raises ``RequestError`` or ``ClientGone``.

    A body that has arrived whole (most do, with their head) is read without the timeout's
    timer and task; only one still arriving is read under ``timeout_s``."""
    try:
        if http.content.is_eof():
            return await http.read()
        return await asyncio.wait_for(http.read(), timeout_s)
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(f"request body larger than {max_bytes} bytes", status=413,
                           code="request_too_large") from None
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout_s:g} s", status=408,
                           code="request_timeout") from None
    except ConnectionError:
        raise ClientGone() from None
    except web.RequestPayloadError:
        encoding = http.headers.get("Content-Encoding", "")
        raise RequestError(f"the request body cannot be decoded (Content-Encoding: {encoding[:40] or 'none'})",
                           code="invalid_body") from None
