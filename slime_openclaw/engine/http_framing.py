"""HTTP/1.x response framing for engine/http.py: the status line and headers, chunked bodies.

Pure functions over bytes, no I/O. ``ProtocolError`` for what is not valid HTTP/1.x.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """The server's answer is not valid HTTP/1.x."""


def take_chunks(buf: bytearray) -> tuple[list[bytes], bool]:
    """Remove the complete chunks of a chunked body from ``buf``: (their data, whether the body ended)."""
    pieces: list[bytes] = []
    while True:
        end = buf.find(b"\r\n")
        if end < 0:
            return pieces, False
        try:
            size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {bytes(buf[:end][:40])!r}") from None
        if size == 0:
            trailer = buf.find(b"\r\n\r\n", end)
            if trailer < 0:
                return pieces, False
            del buf[:trailer + 4]
            return pieces, True
        if len(buf) < end + 2 + size + 2:
            return pieces, False
        pieces.append(bytes(buf[end + 2:end + 2 + size]))
        del buf[:end + 2 + size + 2]


def parse_head(head: str) -> tuple[int, str, dict[str, str]]:
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise ProtocolError(f"bad status code in {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if parts[0] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return status, parts[2] if len(parts) > 2 else "", headers
