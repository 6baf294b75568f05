"""The embedded engine's model runtime: a Hugging Face causal LM behind a scheduler thread.

``Runtime`` loads any HF causal-LM directory (``AutoModelForCausalLM``; the tokenizer only
decodes text and supplies end-of-sequence ids) and runs one scheduler thread that owns the
model. Requests are admitted up to ``max_running`` at a time (the rest wait in FIFO order)
and decoded together: each scheduler round samples one token for every running request
and forwards all those tokens in one batched pass (each request keeps its own KV cache;
engine/batching.py stacks them), so a long request never blocks a short one, and the
asyncio event loop never runs a forward pass. Prefills run one request at a time. Results reach the loop through a ``RequestHandle``.
The scheduler thread uses ``threads`` intra-op threads (default 1: decoding a small model
is a chain of tiny matmuls that extra OpenMP threads slow down, badly so on a busy CPU;
the setting is thread-local and leaves the rest of the process alone).

Control operations (abort, pause/continue, weight updates) are commands executed by the
scheduler thread between two forward passes, so they never race a forward pass:
- pause ``abort``: every running and waiting request ends with ``finish_reason`` abort and
  its tokens so far; ``in_place``: running requests are held with their KV caches;
  ``retract``: held, caches dropped and recomputed on continue. Requests arriving while
  paused wait (they do not fail) until ``resume``.
- ``update_weights(state_dict, weight_version)``: in-process update (the local trainer);
  ``load_weights_from_disk(dir)``: reload safetensors. The version is set when given,
  otherwise incremented. Requests in flight continue with the new weights (their KV cache
  is kept, as in SGLang's in-place mode); each token reports the version that produced it.

Log-prob convention and sampling: engine/sampling.py. Wire format: engine/wire.py. This
module knows nothing of HTTP or JSON.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from slime_openclaw.engine import batching
from slime_openclaw.engine.sequence import Progress, RuntimeRequest, Sequence, validate_request
from slime_openclaw.errors import EngineError, RequestError

log = logging.getLogger(__name__)
T = TypeVar("T")
PAUSE_MODES = ("abort", "in_place", "retract")


class RequestHandle:
    """The asyncio side of one request: an async iterator over its ``Progress`` items."""

    def __init__(self, rid: str, loop: asyncio.AbstractEventLoop):
        self.rid = rid
        self._loop = loop
        self._queue: asyncio.Queue[Progress] = asyncio.Queue()
        self.finished = False

    def deliver(self, progress: Progress) -> bool:
        """Called by the scheduler thread; False when the event loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, progress)
        except RuntimeError:
            return False
        return True

    def __aiter__(self) -> RequestHandle:
        return self

    async def __anext__(self) -> Progress:
        if self.finished:
            raise StopAsyncIteration
        progress = await self._queue.get()
        if progress.finish is not None:
            self.finished = True
        return progress


class Runtime:
    """A loaded model plus the scheduler thread that serves it. Use as a context manager."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_path: str = "",
        max_running: int = 16,
        weight_version: int = 0,
        threads: int = 1,
    ):
        if max_running < 1 or threads < 1:
            raise ValueError("max_running and threads must be at least 1")
        self.threads = threads
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.max_running = max_running
        self.eos_token_ids = _eos_ids(model, tokenizer)
        config = model.config
        self.vocab_size = int(config.vocab_size)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 1 << 20)
        self._version = weight_version
        self._commands: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.Queue()
        self._waiting: collections.deque[tuple[Sequence, RequestHandle]] = collections.deque()
        self._running: list[tuple[Sequence, RequestHandle]] = []
        self._rids: set[str] = set()
        self._rid_lock = threading.Lock()
        self._paused = False
        self._closing = False
        self._stopped = False
        self._state_lock = threading.Lock()
        self.failure: BaseException | None = None
        self.last_token_time = 0.0
        self._thread = threading.Thread(target=self._run, name="engine-scheduler", daemon=True)

    @classmethod
    def load(
        cls, model_path: str | Path, *, max_running: int = 16, dtype: torch.dtype = torch.float32,
        tokenizer_path: str | Path | None = None, threads: int = 1,
    ) -> Runtime:
        """Load a Hugging Face causal-LM directory (weights and tokenizer)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path)
        return cls(model, tokenizer, model_path=str(path), max_running=max_running, threads=threads)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Runtime:
        """Start the scheduler thread (idempotent)."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Abort everything in flight and stop the scheduler thread."""
        if not self._thread.is_alive():
            return
        self._call(self._do_close).result(timeout)
        self._thread.join(timeout)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------
    @property
    def weight_version(self) -> int:
        """Version of the weights now in the model."""
        return self._version

    @property
    def healthy(self) -> bool:
        """The scheduler thread is alive and has not failed."""
        return self._thread.is_alive() and self.failure is None and not self._closing

    @property
    def paused(self) -> bool:
        """Whether generation is paused (requests are held, new ones wait)."""
        return self._paused

    def load_info(self) -> dict[str, int]:
        """Numbers of running and waiting requests (approximate, read without locking)."""
        return {"num_running_reqs": len(self._running), "num_waiting_reqs": len(self._waiting)}

    def token_text(self, token_id: int) -> str:
        """The text of one token (for ``return_text_in_logprobs``)."""
        return str(self.tokenizer.decode([token_id], skip_special_tokens=False))

    # -- requests ------------------------------------------------------------------
    def submit(self, request: RuntimeRequest) -> RequestHandle:
        """Queue a request; call from a running event loop. Raises ``RequestError`` if invalid."""
        validate_request(request, vocab_size=self.vocab_size, context_length=self.context_length)
        with self._rid_lock:
            if request.rid in self._rids:
                raise RequestError(f"duplicate request id {request.rid!r}", param="rid")
            self._rids.add(request.rid)
        handle = RequestHandle(request.rid, asyncio.get_running_loop())
        sequence = Sequence(
            request, tokenizer=self.tokenizer, eos_token_ids=self.eos_token_ids, context_length=self.context_length
        )
        queued = self._call(lambda: self._waiting.append((sequence, handle)))
        if queued.done() and queued.exception() is not None:
            self._forget(request.rid)
            raise EngineError("the engine runtime is not running")
        return handle

    def abort(self, rid: str | None = None, *, abort_all: bool = False) -> concurrent.futures.Future[int]:
        """End one request (or all) with finish_reason abort; resolves to how many ended."""
        return self._call(lambda: self._do_abort(rid, abort_all, "Abort requested."))

    def pause(self, mode: str = "abort") -> concurrent.futures.Future[int]:
        """Pause generation; resolves once no forward pass runs (to the number of requests held or aborted)."""
        if mode not in PAUSE_MODES:
            raise RequestError(f"invalid pause mode {mode!r}, expected one of {list(PAUSE_MODES)}", param="mode")
        return self._call(lambda: self._do_pause(mode))

    def resume(self) -> concurrent.futures.Future[None]:
        """Continue generation after ``pause``."""
        return self._call(self._do_resume)

    def update_weights(
        self, state_dict: Mapping[str, torch.Tensor], weight_version: int | None = None, *, strict: bool = False
    ) -> int:
        """Copy tensors into the model between two forward passes; returns the new version.

        Blocks until applied (safe from any thread but the scheduler's). ``strict`` also
        requires every model parameter to be present. Raises ``ValueError`` on unknown
        names or shape mismatches, leaving the model unchanged.
        """
        return self._call(lambda: self._do_update(state_dict, weight_version, strict)).result()

    def load_weights_from_disk(self, path: str | Path, weight_version: int | None = None) -> int:
        """Read every ``*.safetensors`` file of a directory (or one file) and apply it strictly."""
        from safetensors.torch import load_file

        root = Path(path)
        files = [root] if root.is_file() else sorted(root.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors files in {root}")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        return self.update_weights(state, weight_version, strict=True)

    # -- scheduler thread ------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._state_lock:
            if self._stopped or self._closing or not self._thread.is_alive():
                future.set_exception(EngineError("the engine runtime is not running"))
            else:
                self._commands.put((fn, future))
        return future

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # per-thread setting: the rest of the process keeps its own
        try:
            with torch.no_grad():
                while not self._closing:
                    self._drain_commands(block=not self._can_step())
                    if self._can_step():
                        self._round()
        except BaseException as exc:  # the thread must not die silently
            log.exception("engine scheduler failed")
            self.failure = exc
            self._do_abort(None, True, f"Engine failure: {exc}")
            self._closing = True
        finally:
            with self._state_lock:
                self._stopped = True
            self._fail_pending_commands()

    def _can_step(self) -> bool:
        return not self._paused and bool(self._running or self._waiting)

    def _drain_commands(self, *, block: bool) -> None:
        try:
            item = self._commands.get(timeout=0.5) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            fn, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineError("the engine runtime stopped"))

    def _round(self) -> None:
        """Admit, then give every running request one token: sample each, forward them together."""
        while self._waiting and len(self._running) < self.max_running:
            self._running.append(self._waiting.popleft())
        to_forward: list[tuple[Sequence, RequestHandle]] = []
        for entry in list(self._running):
            sequence, handle = entry
            try:
                if sequence.needs_prefill:
                    sequence.prefill(self.model, self._version)
                progress = sequence.sample()
            except Exception as exc:
                log.exception("request %s failed", sequence.rid)
                progress = sequence.abort(f"Engine error: {exc}", self._version)
            if progress.output_ids:
                self.last_token_time = time.monotonic()
            if not handle.deliver(progress) and progress.finish is None:
                progress = sequence.abort("The client went away.", self._version)
            if progress.finish is not None:
                self._end(entry)
            else:
                to_forward.append(entry)
        self._forward(to_forward)

    def _forward(self, entries: list[tuple[Sequence, RequestHandle]]) -> None:
        """Forward every sampled token: one batched pass when the caches allow it."""
        sequences = [sequence for sequence, _ in entries]
        try:
            if batching.can_batch([s.cache for s in sequences]):
                tokens = [s.pending_token for s in sequences]
                logits, caches = batching.decode_step(self.model, tokens, [s.cache for s in sequences])  # type: ignore[arg-type]
                for row, sequence in enumerate(sequences):
                    sequence.set_decoded(logits[row], caches[row], self._version)
            else:
                for sequence in sequences:
                    sequence.forward_pending(self.model, self._version)
        except Exception as exc:
            log.exception("decode step failed")
            for entry in entries:
                sequence, handle = entry
                if sequence.pending_token is not None:
                    handle.deliver(sequence.abort(f"Engine error: {exc}", self._version))
                    self._end(entry)

    def _end(self, entry: tuple[Sequence, RequestHandle]) -> None:
        self._running.remove(entry)
        self._forget(entry[0].rid)

    def _forget(self, rid: str) -> None:
        with self._rid_lock:
            self._rids.discard(rid)

    def _do_abort(self, rid: str | None, abort_all: bool, message: str) -> int:
        ended = 0
        for pool in (self._running, self._waiting):
            for entry in list(pool):
                sequence, handle = entry
                if abort_all or sequence.rid == rid:
                    pool.remove(entry)
                    handle.deliver(sequence.abort(message, self._version))
                    self._forget(sequence.rid)
                    ended += 1
        return ended

    def _do_pause(self, mode: str) -> int:
        self._paused = True
        if mode == "abort":
            return self._do_abort(None, True, "Abort by pause_generation.")
        if mode == "retract":
            for sequence, _ in self._running:
                sequence.drop_cache()
        return len(self._running) + len(self._waiting)

    def _do_resume(self) -> None:
        self._paused = False

    def _do_close(self) -> None:
        self._do_abort(None, True, "The engine is shutting down.")
        self._closing = True

    def _do_update(self, state_dict: Mapping[str, torch.Tensor], version: int | None, strict: bool) -> int:
        targets = self.model.state_dict()
        unknown = [name for name in state_dict if name not in targets]
        if unknown:
            raise ValueError(f"unknown parameter names: {unknown[:5]}")
        for name, tensor in state_dict.items():
            if tuple(tensor.shape) != tuple(targets[name].shape):
                raise ValueError(f"shape mismatch for {name}: {tuple(tensor.shape)} vs {tuple(targets[name].shape)}")
        if strict:
            covered = {targets[name].data_ptr() for name in state_dict}
            missing = [n for n, p in self.model.named_parameters() if p.data_ptr() not in covered]
            if missing:
                raise ValueError(f"missing parameters: {missing[:5]}")
        for name, tensor in state_dict.items():
            targets[name].copy_(tensor)
        self._version = self._version + 1 if version is None else version
        return self._version


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids from the generation config and the tokenizer."""
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    for value in (getattr(generation, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)
