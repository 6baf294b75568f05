"""Running many episodes through one gateway: evaluation rounds and training groups.

``run_episodes`` plays ``(task, episode id, group)`` triples at most ``concurrency`` at a
time, each in a fresh environment built from the ``EnvSpec`` and closed afterwards, and
returns the records in order. ``evaluation`` summarizes records (``episodes``,
``success_rate``, ``mean_outcome``, request counts). Nothing here trains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from slime_openclaw.agents.driver import DriverSettings, run_episode
from slime_openclaw.agents.episode import EpisodeRecord
from slime_openclaw.envs import EnvSpec

Job = tuple[dict[str, Any], str, str]
"""(task, episode id, task group)."""


async def run_episodes(env_spec: EnvSpec, jobs: Sequence[Job], settings: DriverSettings, *, concurrency: int = 4,
                       on_episode: Callable[[EpisodeRecord], None] | None = None) -> list[EpisodeRecord]:
    """Every job's episode (see the module docstring)."""
    import openai

    gate = asyncio.Semaphore(max(1, concurrency))
    api = openai.AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0,
                             timeout=settings.request_timeout_s)

    async def one(task: dict[str, Any], episode_id: str, group: str) -> EpisodeRecord:
        async with gate:
            env = env_spec.build()
            try:
                record = await run_episode(env, task, settings, episode_id=episode_id, group=group, api=api)
            finally:
                await env.close()
        if on_episode is not None:
            on_episode(record)
        return record

    try:
        return list(await asyncio.gather(*(one(*job) for job in jobs)))
    finally:
        await api.close()


def evaluation(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Success rate (share passed), mean outcome score and request counts of ``records``."""
    n = len(records)
    return {
        "episodes": n,
        "success_rate": sum(r.outcome.passed for r in records) / n if n else 0.0,
        "mean_outcome": sum(r.outcome.score for r in records) / n if n else 0.0,
        "requests_ok": sum(r.requests_ok for r in records),
        "requests_failed": sum(r.requests_failed for r in records),
        "end_reasons": {reason: sum(r.end_reason == reason for r in records)
                        for reason in sorted({r.end_reason for r in records})},
    }
