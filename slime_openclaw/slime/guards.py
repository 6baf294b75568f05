"""Settings slime accepts but that break training on live traffic, refused up front.

Checked twice with the same function: by ``launch`` on the composed flags (before the job
starts) and by the rollout function on slime's ``args`` at its first call (flags added by
hand). Each problem is a one-line ``ConfigError`` naming the fix:

- with our personal-agent rollout function, ``--disable-rewards-normalization`` is required:
  slime centres every group's rewards and a live turn is a group of one, so every reward
  would become exactly 0 (general-agent recipes have task groups and normalize them);
- ``--use-opd`` together with our combined advantage hook adds the OPD term twice;
- ``--use-tis`` with our loss hook does nothing (the hook replaces slime's policy loss, and
  applies its own truncated importance weight, ``openclaw_tis_clip``): refused rather than
  letting a run believe slime's correction is on;
- ``rollout_batch_size * n_samples_per_prompt`` must be a multiple of ``global_batch_size``:
  otherwise slime trains fewer samples per step than the rollout hands over (and we
  acknowledge the rest as trained);
- our personal-agent rollout function (``recipe.ROLLOUT_FUNCTION``) gives one sample per
  live turn, so it needs ``--n-samples-per-prompt 1``. The check is tied to that function:
  a rollout that produces task groups (general agents, n > 1) is not refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slime_openclaw.errors import ConfigError

PERSONAL_ROLLOUT = "slime_openclaw.slime.rollout.generate_rollout"
COMBINED_ADVANTAGE = "slime_openclaw.slime.hooks.combined_advantage"
POLICY_LOSS = "slime_openclaw.slime.hooks.policy_loss"


def settings_from_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Launch's ``{flag: value}`` as slime's attribute names (``false``/null: unset)."""
    return {k.lstrip("-").replace("-", "_"): v for k, v in flags.items() if v is not None and v is not False}


def check(settings: Mapping[str, Any]) -> None:
    """Raise a one-line ``ConfigError`` for the first problem of the module doc."""
    personal = settings.get("rollout_function_path") == PERSONAL_ROLLOUT
    if personal and not settings.get("disable_rewards_normalization"):
        raise ConfigError("add --disable-rewards-normalization: slime centres each group's rewards, and a live turn "
                          "is a group of one, so every reward would be 0")
    if settings.get("use_opd") and settings.get("custom_advantage_function_path") == COMBINED_ADVANTAGE:
        raise ConfigError("--use-opd with the combined advantage hook adds the OPD term twice: "
                          "drop --use-opd (the hook forms it)")
    if settings.get("use_tis") and _our_loss(settings):
        raise ConfigError("--use-tis does nothing with the openclaw loss hook, which replaces slime's policy loss: "
                          "drop --use-tis (the hook applies its own truncated importance weight, openclaw_tis_clip)")
    n = int(settings.get("n_samples_per_prompt") or 1)
    if personal and n != 1:
        raise ConfigError(f"--n-samples-per-prompt {n}: the personal-agent rollout gives one sample per live turn; "
                          "use --n-samples-per-prompt 1")
    rollout, batch = settings.get("rollout_batch_size"), settings.get("global_batch_size")
    if rollout and batch and (int(rollout) * n) % int(batch):
        raise ConfigError(f"--rollout-batch-size {rollout} x --n-samples-per-prompt {n} is not a multiple of "
                          f"--global-batch-size {batch}: slime would train fewer samples than each step hands over")


def _our_loss(settings: Mapping[str, Any]) -> bool:
    return settings.get("loss_type") == "custom_loss" and settings.get("custom_loss_function_path") == POLICY_LOSS
