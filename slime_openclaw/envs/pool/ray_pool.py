"""The Ray pool (``openclaw_env_pool: ray``): each environment on a Ray actor of the cluster.

Actors are ``EnvHost``s (host.py) made remote, each hosting up to ``envs_per_actor``
environments and asking for that many times the environment's resources (resources.py);
they are placed with the SPREAD strategy across the cluster's nodes, reused from episode
to episode, never restarted by Ray (``max_restarts=0``: an environment's state dies with
its process) and owned by this driver (Ray removes them when it exits). ``connect``
joins the running cluster (``ray.init(address="auto")``, the one slime started) and never
starts one. Failures map to ``EnvironmentFailure``:

- the actor died (killed, crashed, its node lost): every lease on it fails, the actor is
  dropped, later episodes get a new one;
- a call ran past ``call_timeout_s``: the lease fails; releasing it closes the environment,
  and an actor that does not answer that release either is killed;
- the actor was unreachable for a moment (``ActorUnavailableError``: the call may or may
  not have run): the call is sent again with the same idempotency key, so a step still
  runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.exceptions

from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.envs.base import EnvironmentFailure
from slime_openclaw.envs.pool.api import EnvPool, Handle
from slime_openclaw.envs.pool.host import EnvHost
from slime_openclaw.envs.pool.resources import check_cluster_offers, env_resources, runtime_env
from slime_openclaw.envs.registry import EnvSpec
from slime_openclaw.errors import ConfigError

log = logging.getLogger(__name__)

RETRIES = 3
"""Resends of a call whose actor was briefly unavailable (same idempotency key)."""
RELEASE_TIMEOUT_S = 10.0
PLACEMENT_TIMEOUT_S = 300.0
"""How long a new actor may take to be placed and started (a worker process, its runtime env)."""


def connect(address: str) -> None:
    """Join the running Ray cluster at ``address`` unless this process already has; never start one."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"openclaw_env_pool: ray found no Ray cluster at {address!r} ({exc}); "
                          "run inside slime's job or start one with `ray start --head`") from None


def uploaded(env: dict[str, Any]) -> dict[str, Any]:
    """``env`` with its local ``py_modules`` uploaded to the cluster (GCS URIs, as ``ray.init`` does
    for a job's own runtime env; an actor's runtime env accepts only URIs)."""
    import tempfile

    try:
        from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    except ImportError as exc:  # a Ray without it: the nodes must have the code
        raise ConfigError(f"openclaw_env_ship_code: this Ray cannot upload modules ({exc}); install "
                          "slime_openclaw and the environment's package on every node and set it to false") from None
    with tempfile.TemporaryDirectory(prefix="openclaw-ray-upload-") as scratch:
        out = upload_py_modules_if_needed(dict(env), include_gitignore=True, scratch_dir=scratch, logger=log)
    out.pop("excludes", None)
    return dict(out)


@dataclass
class ActorSlot:
    """One actor and the leases it hosts."""

    actor: Any
    capacity: int
    ready: Any
    """The actor's ``ready()`` call: awaited by every lease placed on it."""
    leases: set[str] = field(default_factory=set)
    dead: str = ""

    @property
    def free(self) -> int:
        return self.capacity - len(self.leases)


class RayEnvPool(EnvPool):
    """Environments on Ray actors (see the module docstring)."""

    kind = "ray"

    def __init__(self, spec: EnvSpec, config: EnvPoolConfig | None = None) -> None:
        config = config or EnvPoolConfig(pool="ray")
        super().__init__(spec, max_in_flight=config.max_in_flight, call_timeout_s=config.call_timeout_s,
                         lease_ttl_s=config.lease_ttl_s)
        connect(config.ray_address)
        self.resources = env_resources(spec, config)
        check_cluster_offers(self.resources, ray.cluster_resources())
        options = self.resources.actor_options(config.envs_per_actor)
        if config.ship_code:
            options["runtime_env"] = uploaded(runtime_env(spec))
        self.envs_per_actor = config.envs_per_actor
        self.options = {**options, "max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD",
                        "max_concurrency": max(64, 8 * config.envs_per_actor)}
        self.actor_class: Any = ray.remote(EnvHost)
        self.slots: list[ActorSlot] = []

    def _place(self) -> ActorSlot:
        for slot in self.slots:
            if not slot.dead and slot.free > 0:
                return slot
        actor = self.actor_class.options(**self.options).remote(self.spec.name, self.spec.kwargs, self.lease_ttl_s)
        slot = ActorSlot(actor, self.envs_per_actor, actor.ready.remote())
        self.slots.append(slot)
        self.metrics.actors = len(self.slots)
        return slot

    def _drop(self, slot: ActorSlot, why: str) -> None:
        if not slot.dead:
            slot.dead = why
            log.warning("environment actor dropped: %s", why)
        if slot in self.slots:
            self.slots.remove(slot)
        self.metrics.actors = len(self.slots)
        for lease_id in slot.leases:
            handle = self.handles.get(lease_id)
            if handle is not None:
                self.fail(handle, why)

    async def _open(self, lease_id: str) -> Handle:
        slot = self._place()
        slot.leases.add(lease_id)
        handle = Handle(lease_id, slot)
        placement = max(PLACEMENT_TIMEOUT_S, self.call_timeout_s)
        try:
            await asyncio.wait_for(self._remote(slot, slot.ready), placement)
            await asyncio.wait_for(self._remote(slot, slot.actor.open.remote(lease_id)), self.call_timeout_s)
        except asyncio.TimeoutError:
            slot.leases.discard(lease_id)
            raise EnvironmentFailure(f"no environment actor ready within {placement:g}s, or its environment not "
                                     f"built within {self.call_timeout_s:g}s (does the cluster have "
                                     f"{self.options.get('num_cpus')} CPUs free?)") from None
        except BaseException:  # a failure, or the episode cancelled: the slot is free again
            slot.leases.discard(lease_id)  # (an environment the actor opened anyway is reaped unbeaten)
            raise
        return handle

    async def _remote(self, slot: ActorSlot, ref: Any) -> Any:
        """The result of ``ref``; the actor's failures as ``EnvironmentFailure``."""
        try:
            return await ref
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, EnvironmentFailure):
                raise type(cause)(str(cause)) from None
            raise EnvironmentFailure(f"environment raised {type(cause).__name__}: {str(cause)[:500]}") from None
        except ray.exceptions.ActorUnavailableError:
            raise
        except ray.exceptions.RayError as exc:  # ActorDiedError, RuntimeEnvSetupError, a lost node
            why = f"environment actor failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            self._drop(slot, why)
            raise EnvironmentFailure(why) from None

    async def _call(self, handle: Handle, method: str, *args: Any) -> Any:
        slot: ActorSlot = handle.host
        if slot.dead:
            raise EnvironmentFailure(slot.dead)
        for attempt in range(RETRIES + 1):
            try:
                return await self._remote(slot, getattr(slot.actor, method).remote(handle.lease_id, *args))
            except ray.exceptions.ActorUnavailableError:
                if attempt == RETRIES:
                    self._drop(slot, f"environment actor unavailable after {RETRIES} resends of {method}")
                    raise EnvironmentFailure(slot.dead) from None
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _beat(self, handles: list[Handle]) -> None:
        by_slot: dict[int, tuple[ActorSlot, list[str]]] = {}
        for handle in handles:
            by_slot.setdefault(id(handle.host), (handle.host, []))[1].append(handle.lease_id)
        answers = await asyncio.gather(*(self._remote(slot, slot.actor.heartbeat.remote(ids))
                                         for slot, ids in by_slot.values()), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                continue  # a dead actor was dropped (its leases failed); anything else: next round
            self.mark_lost(answer)

    async def _release(self, handle: Handle) -> None:
        slot: ActorSlot = handle.host
        try:
            if not slot.dead:
                await asyncio.wait_for(self._remote(slot, slot.actor.release.remote(handle.lease_id)),
                                       RELEASE_TIMEOUT_S)
        except (asyncio.TimeoutError, EnvironmentFailure, ray.exceptions.RayError) as exc:
            self._kill(slot, f"release of lease {handle.lease_id} failed ({type(exc).__name__})")
        finally:
            slot.leases.discard(handle.lease_id)

    def _kill(self, slot: ActorSlot, why: str) -> None:
        self._drop(slot, why)
        with contextlib.suppress(ray.exceptions.RayError):  # already gone
            ray.kill(slot.actor, no_restart=True)

    async def _shutdown(self) -> None:
        for slot in list(self.slots):
            slot.dead = slot.dead or "the environment pool closed"  # expected: not logged as a failure
            self._kill(slot, slot.dead)

    async def actor_stats(self) -> list[dict[str, Any]]:
        """Each live actor's ``EnvHost.stats()`` (leases, reclaimed, steps run and replayed, RSS)."""
        slots = [s for s in self.slots if not s.dead]
        answers = await asyncio.gather(*(self._remote(s, s.actor.stats.remote()) for s in slots),
                                       return_exceptions=True)
        return [a for a in answers if isinstance(a, dict)]
