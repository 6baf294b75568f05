"""``EngineClient``: the one client for SGLang and the embedded engine (SGLang native API).

Implements the ``Engine`` protocol (engine/protocol.py) over engine/http.py's keep-alive
HTTP client, plus the admin calls the weight-update path needs. Every failure to reach the engine or an error answer becomes
``EngineError`` with what failed and the engine's message, never the engine's address (the
gateway relays these to clients, who must not learn it); an unreachable engine fails within the
connect timeout (2 s by default).

Streaming: SGLang's ``/generate`` SSE chunks repeat the *cumulative* ``output_ids`` and
output log-probs by default and carry only the new ones with
``--incremental-streaming-output`` (the embedded engine's way). ``meta_info.completion_tokens``
is cumulative in both, so a chunk whose list has ``completion_tokens`` entries is
cumulative and one with ``completion_tokens - seen`` entries is incremental; ``stream``
yields only the new tokens either way; with ``merge_chunks`` the chunks that arrived
together (a reader that fell behind) become one delta, so a busy gateway does less work
per token. ``weight_version`` arrives as a string in SGLang
(``"default"`` before any update, read as 0) and is returned as an int.

Routing: a request's ``routing_key`` (its session) goes out as slime's ``X-SMG-Routing-Key``
header, which the SGLang router's ``consistent_hashing`` (and ``manual``) policy uses to send
every call of a session to the same engine (its prefix cache). A key that is not plain
printable ASCII of at most 256 characters (a client chose it) is sent as its SHA-256 hex
digest: as stable, and it cannot break the request's head.

This module does not retry; retrying across a weight-update pause is the caller's policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from slime_openclaw.engine.http import ConnectError, HttpPool, HttpResponse, ProtocolError
from slime_openclaw.engine.protocol import GenerateDelta, GenerateOutput, GenerateRequest
from slime_openclaw.errors import EngineError
from slime_openclaw.types import FinishReason

ROUTING_HEADER = "X-SMG-Routing-Key"
_PLAIN_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


def parse_weight_version(value: Any) -> int:
    """SGLang's string weight version as an int (``None``/``"default"`` -> 0)."""
    if value is None or value == "default":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise EngineError(f"engine reported a non-integer weight_version {value!r}") from None


def parse_finish_reason(value: Any) -> FinishReason | None:
    """SGLang's ``finish_reason`` object (or bare string) as a ``FinishReason``; errors count as abort."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else value
    return _FINISH.get(str(kind), FinishReason.ABORT)


def routing_headers(key: str | None) -> dict[str, str] | None:
    """The routing header for a session key (None: no header)."""
    if not key:
        return None
    if not _PLAIN_KEY.fullmatch(key):
        key = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return {ROUTING_HEADER: key}


def _values(entries: Any) -> list[Any]:
    return [entry[0] if entry is not None else None for entry in entries or []]


def _tops(rows: Any) -> tuple[Any, ...]:
    return tuple(None if row is None else tuple((float(e[0]), int(e[1])) for e in row) for row in rows or [])


def _new_part(items: list[Any], total: int, seen: int, what: str) -> list[Any]:
    """The new tail of a streamed list that is either cumulative or incremental."""
    if len(items) == total:
        return items[seen:]
    if len(items) == total - seen:
        return items
    raise EngineError(f"streamed {what} has {len(items)} entries, expected {total} or {total - seen}")


class EngineClient:
    """Talks to one engine at ``base_url`` (SGLang or the embedded engine)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        request_timeout: float = 600.0,
        api_key: str | None = None,
        merge_chunks: bool = False,
    ):
        """``request_timeout``: seconds the engine may stay silent (no byte of an answer or
        of a streamed chunk) before the call fails."""
        self.base_url = base_url.rstrip("/")
        self.merge_chunks = merge_chunks
        """``stream`` merges the chunks that one read brought in (same weight version) into one delta."""
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._pool: HttpPool | None = None

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections to the engine."""
        if self._pool is not None:
            self._pool.close()

    async def _send(self, method: str, path: str, body: Any, timeout: float | None,
                    headers: dict[str, str] | None = None) -> HttpResponse:
        if self._pool is None:
            try:
                self._pool = HttpPool(self.base_url, connect_timeout=self._connect_timeout, headers=self._headers)
            except ValueError as exc:
                raise EngineError(f"bad engine URL: {exc}") from None
        data = None if body is None else orjson.dumps(body)
        return await self._pool.request(method, path, data, read_timeout=timeout, headers=headers)

    async def _request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None,
                       headers: dict[str, str] | None = None) -> Any:
        """One non-streaming call; returns parsed JSON (or text when the answer is not JSON)."""
        try:
            async with await self._send(method, path, body, timeout or self._request_timeout, headers) as response:
                raw = await response.read()
            _raise_for_status(response.status, response.reason, raw, path)
        except ConnectError as exc:
            raise EngineError(f"cannot reach engine ({_what(exc)})") from exc
        except TimeoutError as exc:
            raise EngineError(f"the engine did not answer {path} in time") from exc
        except (OSError, ProtocolError) as exc:
            raise EngineError(f"the engine failed on {path} ({_what(exc)})") from exc
        if not raw.strip():
            return None
        try:
            return loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    # -- the Engine protocol ---------------------------------------------------------
    async def generate(self, request: GenerateRequest) -> GenerateOutput:
        """Generate (or score, with ``max_new_tokens=0``) and return the whole result."""
        body = await self._request("POST", "/generate", request.to_json(stream=False),
                                   headers=routing_headers(request.routing_key))
        if not isinstance(body, dict) or "meta_info" not in body:
            raise EngineError("the engine returned an unexpected /generate body")
        meta = body["meta_info"]
        output_ids = tuple(int(t) for t in body.get("output_ids") or ())
        log_probs = tuple(float(v) for v in _values(meta.get("output_token_logprobs")))
        if request.return_logprob and len(log_probs) != len(output_ids):
            raise EngineError(f"engine returned {len(log_probs)} log-probs for {len(output_ids)} tokens")
        finish = parse_finish_reason(meta.get("finish_reason"))
        return GenerateOutput(
            output_ids=output_ids,
            output_log_probs=log_probs,
            finish_reason=finish if finish is not None else FinishReason.ABORT,
            weight_version=parse_weight_version(meta.get("weight_version")),
            prompt_tokens=int(meta.get("prompt_tokens", len(request.input_ids))),
            text=body.get("text") or "",
            input_log_probs=tuple(_values(meta.get("input_token_logprobs"))),
            input_top_logprobs=_tops(meta.get("input_top_logprobs")),
            output_top_logprobs=_tops(meta.get("output_top_logprobs")),
        )

    async def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
        """Generate, yielding only the tokens that are new in each chunk.

        One generator, reading the body's pieces as they arrive (``HttpResponse.take``, no
        generator of its own); the SSE split and the chunk parsing are plain calls inside it,
        and a read that brought one event (the common case) is parsed without a generator:
        all of it runs once per streamed token."""
        reader = _DeltaReader(len(request.input_ids))
        events = SseEvents()
        merge = self.merge_chunks
        try:
            async with await self._send("POST", "/generate", request.to_json(stream=True),
                                        self._request_timeout, routing_headers(request.routing_key)) as response:
                if response.status != 200:
                    _raise_for_status(response.status, response.reason, await response.read(), "/generate")
                while True:
                    data = response.take()
                    if data is None:
                        await response.wait()
                        continue
                    payloads = events.feed(data)
                    deltas = (reader.delta(_chunk(payloads[0])),) if len(payloads) == 1 else (
                        reader.deltas(payloads, merge=merge))
                    for delta in deltas:
                        if delta.finish_reason is not None:
                            response.finish_in_background()  # "[DONE]" may follow: keep the connection
                            yield delta
                            return
                        if delta.output_ids:
                            yield delta
                    if events.done:
                        break
        except ConnectError as exc:
            raise EngineError(f"cannot reach engine ({_what(exc)})") from exc
        except TimeoutError as exc:
            raise EngineError("the engine stalled while streaming") from exc
        except (OSError, ProtocolError) as exc:
            raise EngineError(f"the engine failed while streaming ({_what(exc)})") from exc
        raise EngineError("the engine ended the stream without a finish_reason")

    async def weight_version(self) -> int:
        """The engine's current weight version."""
        body = await self._request("GET", "/get_weight_version")
        return parse_weight_version(body.get("weight_version") if isinstance(body, dict) else None)

    async def health(self) -> bool:
        """True when ``/health`` answers 200 within the connect timeout (never raises)."""
        try:
            await self._request("GET", "/health", timeout=max(self._connect_timeout, 1.0) * 5)
        except EngineError:
            return False
        return True

    # -- admin calls -------------------------------------------------------------------
    async def pause_generation(self, mode: str = "abort") -> None:
        """Pause: ``abort`` ends in-flight requests, ``in_place``/``retract`` hold them."""
        await self._request("POST", "/pause_generation", {"mode": mode})

    async def continue_generation(self) -> None:
        """Resume after ``pause_generation``."""
        await self._request("POST", "/continue_generation", {})

    async def abort_request(self, rid: str | None = None, *, abort_all: bool = False) -> None:
        """End request ``rid`` (or every request) with finish_reason abort."""
        await self._request("POST", "/abort_request", {"rid": rid or "", "abort_all": abort_all})

    async def update_weights_from_disk(
        self, path: str, weight_version: int | None = None, *, abort_all_requests: bool = False
    ) -> str:
        """Reload weights from a checkpoint directory; returns the engine's message."""
        body: dict[str, Any] = {"model_path": str(path), "abort_all_requests": abort_all_requests}
        if weight_version is not None:
            body["weight_version"] = str(weight_version)
        answer = await self._request("POST", "/update_weights_from_disk", body)
        if not isinstance(answer, dict) or not answer.get("success"):
            raise EngineError(f"the engine refused the weight update: {answer}")
        return str(answer.get("message", ""))

    async def flush_cache(self) -> bool:
        """Ask the engine to flush its prefix cache; False when it declined (requests running)."""
        try:
            await self._request("GET", "/flush_cache")
        except EngineError as exc:
            if exc.code == "engine_rejected":
                return False
            raise
        return True

    async def model_info(self) -> dict[str, Any]:
        """``/get_model_info``: model path, weight version, ..."""
        body = await self._request("GET", "/get_model_info")
        return body if isinstance(body, dict) else {}


def _what(exc: BaseException) -> str:
    """A transport failure by its kind only: its text names the engine's address, which clients never see."""
    return type(exc).__name__


def loads(raw: bytes) -> Any:
    """Parse a JSON answer; Python's parser takes over for the ``NaN``/``Infinity`` that strict JSON lacks."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _raise_for_status(status: int, reason: str, raw: bytes, path: str) -> None:
    if status < 400:
        return
    message = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(message)
        if isinstance(body, dict):
            error = body.get("error")
            message = str(error.get("message", error) if isinstance(error, dict) else body.get("message", body))
    except ValueError:
        pass
    code = "engine_rejected" if 400 <= status < 500 else "engine_unavailable"
    raise EngineError(f"the engine answered {status} on {path}: {message or reason}", code=code)


class SseEvents:
    """The payloads of an SSE body's ``data:`` lines until ``data: [DONE]`` (or the body's end),
    fed the body as it arrives; ``feed`` gives the complete events of what arrived together
    (one read often holds several)."""

    def __init__(self) -> None:
        self.done = False
        """``[DONE]`` came, or the body ended (``feed(b"")``)."""
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by ``data``; ``b""`` marks the end of the body."""
        if self.done:
            return []
        pending = self._pending
        if not data:
            lines, self._pending, self.done = [pending], b"", True
        elif not pending and data.startswith(b"data: {") and data.find(b"\n") == len(data) - 2 and (
                data.endswith(b"\n\n")):  # the common read: one whole JSON event, nothing else
            return [data[6:-2]]
        else:
            lines = (pending + data if pending else data).split(b"\n")
            self._pending = lines.pop()
        batch = []
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            batch.append(payload)
        return batch


def _chunk(payload: bytes) -> dict[str, Any]:
    chunk = loads(payload)
    if "error" in chunk:
        error = chunk["error"]
        raise EngineError(f"engine stream error: {error.get('message', error) if isinstance(error, dict) else error}")
    return chunk


class _DeltaReader:
    """Turns the streamed chunks of one request into deltas of new tokens."""

    def __init__(self, prompt_tokens: int):
        self.seen = 0
        self.prompt_tokens = prompt_tokens
        self._version: tuple[Any, int] | None = None  # (as sent, parsed): chunks repeat it

    def _weight_version(self, raw: Any) -> int:
        if self._version is None or self._version[0] != raw:
            self._version = (raw, parse_weight_version(raw))
        return self._version[1]

    def deltas(self, payloads: list[bytes], *, merge: bool) -> Iterator[GenerateDelta]:
        """The deltas of a batch of payloads; with ``merge``, consecutive deltas of one weight
        version are joined (a finished one ends the run). A bad chunk raises after the deltas
        before it were given."""
        pending: GenerateDelta | None = None
        try:
            for payload in payloads:
                delta = self.delta(_chunk(payload))
                if not merge:
                    yield delta
                elif pending is not None and pending.finish_reason is None and (
                        pending.weight_version == delta.weight_version):
                    pending = GenerateDelta(
                        pending.output_ids + delta.output_ids, pending.output_log_probs + delta.output_log_probs,
                        delta.weight_version, delta.finish_reason, delta.prompt_tokens)
                else:
                    if pending is not None:
                        yield pending
                    pending = delta
        except Exception:
            if pending is not None:
                yield pending
            raise
        if pending is not None:
            yield pending

    def delta(self, chunk: dict[str, Any]) -> GenerateDelta:
        meta = chunk.get("meta_info") or {}
        seen = self.seen
        ids = chunk.get("output_ids") or []
        completion = meta.get("completion_tokens")
        total = seen + len(ids) if completion is None else int(completion)
        new_ids = tuple(map(int, ids if len(ids) == total - seen else _new_part(ids, total, seen, "output_ids")))
        log_probs: tuple[float, ...] = ()
        entries = meta.get("output_token_logprobs")
        if entries is not None or "output_token_logprobs" in meta:
            entries = entries or []
            if len(entries) != total - seen:
                entries = _new_part(entries, total, seen, "log-probs")
            log_probs = tuple([float(e[0]) for e in entries])
        self.seen = seen + len(new_ids)
        finish = meta.get("finish_reason")
        version = meta.get("weight_version")
        known = self._version
        return GenerateDelta(new_ids, log_probs, known[1] if known is not None and known[0] == version
                             else self._weight_version(version),
                             None if finish is None else parse_finish_reason(finish),
                             int(meta.get("prompt_tokens", self.prompt_tokens)))
