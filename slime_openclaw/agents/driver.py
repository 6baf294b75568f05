"""The episode driver: one general-agent episode as an OpenAI client of the gateway.

``run_episode(env, task, settings, ...)``: ``env.reset(task)`` opens the chat; each turn
posts the history to ``/v1/chat/completions`` with ``X-Session-Id: <episode id>`` (the
session is the episode), hands the reply exactly as returned to ``env.step`` and appends
the environment's answer, which is therefore that turn's next state. When the environment
says done, one closing request carries the last answer with ``X-Session-Done: 1`` (so the
last turn gets its next state; its own one-token reply is never trained), then
``env.outcome()`` is recorded on the session with ``POST /v1/sessions/{id}/outcome``.
An ``EnvironmentFailure`` (the environment, not the agent, failed) ends the episode with
``end_reason == "env_failure"`` and no outcome: nothing of it is trained.

Nothing rewards a harness action: when a request fails, the episode times out or runs out
of turns, the driver sends the environment nothing on the agent's behalf; the outcome is
whatever the environment measures of what the agent did. Capture, next states, judges,
hints and the teacher are the gateway's and the signal code's, as for any client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai

from slime_openclaw.agents.episode import ENV_FAILURE, EpisodeRecord, StepRecord
from slime_openclaw.envs.base import Environment, EnvironmentFailure, Message, Observation, Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriverSettings:
    """How the driver talks to the gateway."""

    base_url: str
    """The gateway's ``/v1`` URL."""
    model: str = "policy"
    api_key: str = "local"
    max_turns: int = 8
    """Agent turns at most; the environment usually ends the episode first."""
    max_tokens: int = 256
    temperature: float = 1.0
    request_timeout_s: float = 120.0
    episode_timeout_s: float = 600.0
    train: bool = True
    """False sends ``X-OpenClaw-Train: off`` (evaluation: served, never recorded)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    """Seeds each request's sampler (OpenAI's ``seed``) from this, the episode's seed key and the
    turn index: the same episode of the same policy draws the same tokens. None: unseeded."""


def reply_message(message: Any) -> Message:
    """The assistant message of a chat completion as a plain dict (what the gateway returned)."""
    data = message.model_dump(exclude_none=True)
    data.setdefault("content", None)
    return data


class _Client:
    """The gateway seen by one episode: chat turns in its session, then the outcome."""

    def __init__(self, api: openai.AsyncOpenAI, settings: DriverSettings, episode_id: str,
                 seed_key: str | None = None) -> None:
        self.api, self.settings, self.episode_id = api, settings, episode_id
        self.seed_key = seed_key or episode_id
        self.ok = self.failed = 0

    def request_seed(self) -> int | None:
        """This request's sampling seed (see ``DriverSettings.seed``)."""
        if self.settings.seed is None:
            return None
        text = f"{self.settings.seed}:{self.seed_key}:{self.ok + self.failed}".encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") >> 1

    def headers(self, done: bool) -> dict[str, str]:
        headers = {"X-Session-Id": self.episode_id}
        if done:
            headers["X-Session-Done"] = "1"
        if not self.settings.train:
            headers["X-OpenClaw-Train"] = "off"
        return headers

    async def turn(self, messages: list[Message], tools: list[dict[str, Any]], *, done: bool = False) -> Message:
        s, seed = self.settings, self.request_seed()
        body = dict(s.extra_body) if seed is None else {**s.extra_body, "seed": seed}
        try:
            completion = await self.api.chat.completions.create(
                model=s.model, messages=messages, tools=tools or openai.NOT_GIVEN,  # type: ignore[arg-type]
                max_tokens=1 if done else s.max_tokens, temperature=s.temperature,
                extra_headers=self.headers(done), extra_body=body or None,
            )
        except BaseException:
            self.failed += 1
            raise
        self.ok += 1
        return reply_message(completion.choices[0].message)

    async def record_outcome(self, outcome: Outcome) -> None:
        s = self.settings
        body = {"score": outcome.score, "passed": outcome.passed,
                "details": json.loads(json.dumps(outcome.details, default=str))}
        url = f"{s.base_url.rstrip('/')}/sessions/{self.episode_id}/outcome"
        timeout = aiohttp.ClientTimeout(total=s.request_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.post(url, json=body, headers={"Authorization": f"Bearer {s.api_key}"}) as response:
            if response.status != 200:
                raise RuntimeError(f"outcome not recorded: HTTP {response.status} {await response.text()}")


async def _relay(env: Environment, client: _Client, messages: list[Message], tools: list[dict[str, Any]],
                 steps: list[StepRecord], max_turns: int) -> str:
    """Agent turns until the environment is done; returns why the loop ended."""
    for index in range(max_turns):
        reply = await client.turn(messages, tools)
        step = await env.step(reply)
        steps.append(StepRecord(index, reply, tuple(step.messages), dict(step.info), step.done))
        messages += [reply, *step.messages]
        if step.done:
            return "done"
    return "max_turns"


async def run_episode(env: Environment, task: dict[str, Any], settings: DriverSettings, *, episode_id: str,
                      group: str, api: openai.AsyncOpenAI | None = None,
                      seed_key: str | None = None) -> EpisodeRecord:
    """Run one episode of ``task`` through the gateway (see the module docstring).

    ``seed_key`` (default: the episode id) names the episode's draws when ``settings.seed``
    is set: two episodes with the same key and policy sample the same tokens.

    When the environment fails (``EnvironmentFailure``: its actor died, a call ran past its
    limit, its lease was reclaimed), the episode ends with ``end_reason == "env_failure"``,
    no closing request and no outcome recorded: it is not the agent's result.
    """
    own = api is None
    api = api or openai.AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0,
                                    timeout=settings.request_timeout_s)
    client = _Client(api, settings, episode_id, seed_key)
    steps: list[StepRecord] = []
    opening: tuple[Message, ...] = ()
    try:
        observation = await env.reset(task)
        opening = tuple(observation.messages)
        end, error = await _play(env, client, observation, steps, settings)
        outcome = await env.outcome()
        recorded = False
        if settings.train and client.ok:
            try:
                await client.record_outcome(outcome)
                recorded = True
            except (aiohttp.ClientError, RuntimeError, asyncio.TimeoutError) as exc:
                error = error or str(exc)[:200]
                log.warning("episode %s: %s", episode_id, error)
    except EnvironmentFailure as exc:
        log.warning("episode %s: environment failure: %s", episode_id, exc)
        return env_failure_record(task, episode_id, group, str(exc), opening=opening, steps=steps,
                                  requests_ok=client.ok, requests_failed=client.failed)
    finally:
        if own:
            await api.close()
    return EpisodeRecord(episode_id=episode_id, task=task, group=group, opening=opening,
                         steps=tuple(steps), outcome=outcome, end_reason=end, requests_ok=client.ok,
                         requests_failed=client.failed, outcome_recorded=recorded, error=error)


async def _play(env: Environment, client: _Client, observation: Observation, steps: list[StepRecord],
                settings: DriverSettings) -> tuple[str, str]:
    """The agent's turns and the closing request; (end reason, error)."""
    messages: list[Message] = list(observation.messages)
    error = ""
    try:
        end = await asyncio.wait_for(_relay(env, client, messages, list(observation.tools), steps,
                                            settings.max_turns), settings.episode_timeout_s)
    except asyncio.TimeoutError:
        end = "timeout"
    except (openai.APIError, aiohttp.ClientError) as exc:
        end, error = "request_failed", f"{type(exc).__name__}: {getattr(exc, 'status_code', '')}".rstrip(": ")
    if end == "done" and steps and steps[-1].answer:
        try:  # the last answer reaches the gateway: it is the last turn's next state
            await client.turn(messages, list(observation.tools), done=True)
        except (openai.APIError, aiohttp.ClientError) as exc:
            error = f"closing request failed: {type(exc).__name__}"
    return end, error


def env_failure_record(task: dict[str, Any], episode_id: str, group: str, why: str, *,
                       opening: tuple[Message, ...] = (), steps: list[StepRecord] | None = None,
                       requests_ok: int = 0, requests_failed: int = 0) -> EpisodeRecord:
    """The record of an episode its environment failed (``end_reason == "env_failure"``)."""
    return EpisodeRecord(episode_id=episode_id, task=task, group=group, opening=opening, steps=tuple(steps or ()),
                         outcome=Outcome(0.0, False, {ENV_FAILURE: why}), end_reason=ENV_FAILURE,
                         requests_ok=requests_ok, requests_failed=requests_failed, error=why[:500])
