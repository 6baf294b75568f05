"""General-agent environments (terminal, tool-call, SWE, GUI) behind one interface.

- ``base``: ``Environment``, ``Observation``, ``Step``, ``Outcome`` and the documented
  ``Step.info`` signal keys (``SIGNAL_KEYS``);
- ``registry``: built-in short names, dotted-path loading, typed ``--env-arg`` values,
  the picklable ``EnvSpec``;
- ``tasks``: the JSON-lines task reader;
- ``pool``: where environments run (in-process or on Ray actors), with leases, time limits
  and idempotent steps (imports ray only for the Ray pool).

Built-ins live in their own modules (``terminal``, ``toolcall``, ``gui``, ``swe``) and are imported only
when named, so importing this package stays cheap. This package knows nothing about the
gateway; the episode driver lives with the agents' loop.
"""

from slime_openclaw.envs.base import (
    SIGNAL_KEYS,
    Environment,
    EnvironmentFailure,
    Message,
    Observation,
    Outcome,
    Step,
)
from slime_openclaw.envs.registry import (
    BUILTIN,
    EnvSpec,
    build_env,
    builtin_tasks,
    load_env_class,
    mistaken_replies,
    parse_env_args,
    reference_replies,
)
from slime_openclaw.envs.tasks import TaskError, iter_tasks, read_tasks, write_tasks

__all__ = [
    "BUILTIN",
    "SIGNAL_KEYS",
    "EnvSpec",
    "Environment",
    "EnvironmentFailure",
    "Message",
    "Observation",
    "Outcome",
    "Step",
    "TaskError",
    "build_env",
    "builtin_tasks",
    "iter_tasks",
    "load_env_class",
    "mistaken_replies",
    "parse_env_args",
    "read_tasks",
    "reference_replies",
    "write_tasks",
]
