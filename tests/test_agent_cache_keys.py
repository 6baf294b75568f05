"""The cache keys of the prepared agent policies depend on what went into them, nothing else.

A key is computed, never a policy prepared (that takes minutes): the same commit gives the same
keys in fresh processes with other hash seeds, from another checkout directory and another
working directory; the built-in environments' keys are pinned, so a change that moves one
(and so prepares that policy again on every machine) is a deliberate one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import slime_openclaw
from slime_openclaw.envs import EnvSpec
from slime_openclaw.local.agents.pretrain import default_agent_policy_dir

PINNED = {
    "swe": "agent-swe-dda4bfc33b3e",
    "gui": "agent-gui-858c30e784ee",
    "terminal": "agent-terminal-3c9cfb2ea055",
    "toolcall": "agent-toolcall-f94799ebf218",
}
"""The keys since 88d7cf0 (pre-training version 2) for swe and gui, 3b2c71b (p_mistaken) for
toolcall, 0b88980 (``TerminalEnv.TASKS_VERSION`` 2) for terminal. Move one only with a change
that prepares that policy differently (a recipe, a version, the generator's tasks)."""

KEYS_SCRIPT = """
import json, sys
from pathlib import Path
import slime_openclaw
from slime_openclaw.envs import EnvSpec
from slime_openclaw.local.agents.pretrain import default_agent_policy_dir
names = {env: default_agent_policy_dir(EnvSpec(env), cache_root=Path("cache")).name for env in sys.argv[1:]}
print(json.dumps({"package": slime_openclaw.__file__, "keys": names}))
"""


def keys_in_fresh_process(package_root: Path, cwd: Path, hash_seed: str) -> dict[str, str]:
    """The keys of the ``PINNED`` environments as a new interpreter computes them from ``package_root``."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(package_root)}
    env.pop("XDG_CACHE_HOME", None)
    out = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, *PINNED], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    answer = json.loads(out.stdout)
    assert Path(answer["package"]).is_relative_to(package_root)  # that checkout's code, not this one's
    return dict(answer["keys"])


def test_the_keys_are_the_same_from_another_checkout_another_directory_and_hash_seed(tmp_path: Path) -> None:
    here = Path(slime_openclaw.__file__).parent
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(here, copy / "slime_openclaw", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cwd").mkdir()
    first = keys_in_fresh_process(here.parent, tmp_path, "0")
    second = keys_in_fresh_process(copy, tmp_path / "cwd", "4242")
    third = keys_in_fresh_process(copy, tmp_path, "random")
    in_process = {env: default_agent_policy_dir(EnvSpec(env), cache_root=tmp_path).name for env in PINNED}
    assert first == second == third == in_process


def test_the_builtin_environments_keep_their_pinned_keys(tmp_path: Path) -> None:
    for env, name in PINNED.items():
        assert default_agent_policy_dir(EnvSpec(env), cache_root=tmp_path).name == name, env
