"""Running many episodes through one gateway: evaluation rounds and training groups.

``run_episodes`` plays ``(task, episode id, group)`` triples at most ``concurrency`` at a
time, each in a fresh environment leased from an environment pool (envs/pool/: the
in-process one unless a pool is given) and closed afterwards, and returns the records in
order; with ``settings.seed`` set, ``seed_keys`` (one per job, default the episode ids) name
each episode's draws, so an evaluation repeated with the same keys compares the policies on
the same draws. ``evaluation`` summarizes records (``episodes``, ``success_rate``, ``mean_outcome``
over the episodes whose environment did not fail, ``env_failures``, request counts).
Nothing here trains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from slime_openclaw.agents.driver import DriverSettings, env_failure_record, run_episode
from slime_openclaw.agents.episode import EpisodeRecord
from slime_openclaw.envs import EnvironmentFailure, EnvSpec
from slime_openclaw.envs.pool import EnvPool, LocalEnvPool

Job = tuple[dict[str, Any], str, str]
"""(task, episode id, task group)."""


async def run_episodes(env_spec: EnvSpec, jobs: Sequence[Job], settings: DriverSettings, *, concurrency: int = 4,
                       on_episode: Callable[[EpisodeRecord], None] | None = None,
                       pool: EnvPool | None = None, seed_keys: Sequence[str] | None = None) -> list[EpisodeRecord]:
    """Every job's episode (see the module docstring)."""
    import openai

    keys = list(seed_keys) if seed_keys is not None else [job[1] for job in jobs]
    if len(keys) != len(jobs):
        raise ValueError(f"{len(keys)} seed keys for {len(jobs)} jobs")

    gate = asyncio.Semaphore(max(1, concurrency))
    own = pool is None
    envs = pool or LocalEnvPool(env_spec, max_in_flight=max(1, concurrency))
    api = openai.AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0,
                             timeout=settings.request_timeout_s)

    async def one(task: dict[str, Any], episode_id: str, group: str, seed_key: str) -> EpisodeRecord:
        async with gate:
            try:
                async with envs.lease() as env:
                    record = await run_episode(env, task, settings, episode_id=episode_id, group=group, api=api,
                                               seed_key=seed_key)
            except EnvironmentFailure as exc:  # no environment could be placed for it
                record = env_failure_record(task, episode_id, group, str(exc))
        if on_episode is not None:
            on_episode(record)
        return record

    try:
        return list(await asyncio.gather(*(one(*job, key) for job, key in zip(jobs, keys, strict=True))))
    finally:
        await api.close()
        if own:
            await envs.close()


def evaluation(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Success rate (share passed), mean outcome score and request counts of ``records``;
    episodes whose environment failed are counted apart (``env_failures``), not as failures."""
    measured = [r for r in records if not r.env_failed]
    n = len(measured)
    return {
        "episodes": len(records),
        "env_failures": len(records) - n,
        "success_rate": sum(r.outcome.passed for r in measured) / n if n else 0.0,
        "mean_outcome": sum(r.outcome.score for r in measured) / n if n else 0.0,
        "requests_ok": sum(r.requests_ok for r in records),
        "requests_failed": sum(r.requests_failed for r in records),
        "end_reasons": {reason: sum(r.end_reason == reason for r in records)
                        for reason in sorted({r.end_reason for r in records})},
    }
