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
  a rollout that produces task groups (general agents, n > 1) is not refused here;
- with the agents' generate function (``AGENT_GENERATE``), whose results are lists of
  Samples (one per step) with float rewards, the slime settings whose code reads a group's
  members as Samples (at slime 624b824a): ``--partial-rollout`` (``sglang_rollout.abort``
  reads ``.response`` of each group member, and would hand finished episodes back to the data
  source), ``--group-rm`` (``generate_and_rm_group`` sets ``.reward`` on each member) and
  slime's own dynamic-sampling filters (``filter_hub``: they call
  ``get_reward_value`` on each member; ``agent_filters`` has the episode-level equivalent),
  and ``--rollout-sample-hook-path`` under slime's fully-async rollout (the hooks rebuild each
  episode as a plain list, whose ``index`` fully-async then sorts by is the list's method);
- with either (their samples are the gateway's turns): ``--reward-key``/``--eval-reward-key``
  (slime's ``get_reward_value`` would index the float reward), ``--rollout-top-p`` below 1
  (slime's ``_convert_samples_to_train_data`` then asserts top-p nucleus token ids on every
  sample; the gateway's clients choose their own top_p) and ``--use-rollout-routing-replay``
  (the train actor requires every token's routed experts): the gateway records neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slime_openclaw.errors import ConfigError

PERSONAL_ROLLOUT = "slime_openclaw.slime.rollout.generate_rollout"
COMBINED_ADVANTAGE = "slime_openclaw.slime.hooks.combined_advantage"
POLICY_LOSS = "slime_openclaw.slime.hooks.policy_loss"
AGENT_GENERATE = "slime_openclaw.slime.agent_generate.generate"
SLIME_FILTERS = "slime.rollout.filter_hub."
FULLY_ASYNC_ROLLOUT = "slime.rollout.fully_async_rollout.generate_rollout_fully_async"
AGENT_FILTER = "slime_openclaw.slime.agent_filters.check_reward_nonzero_std"


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
    agent = settings.get("custom_generate_function_path") == AGENT_GENERATE
    if agent:
        check_agent(settings)
    if personal or agent:
        check_gateway_samples(settings)


def check_gateway_samples(settings: Mapping[str, Any]) -> None:
    """The settings that ask the gateway's samples for what it does not record (module doc)."""
    for flag in ("reward_key", "eval_reward_key"):
        if settings.get(flag):
            raise ConfigError(f"drop --{flag.replace('_', '-')}: the openclaw samples' rewards are numbers, "
                              "and slime would index them")
    top_p = settings.get("rollout_top_p")
    if top_p is not None and float(top_p) != 1.0:
        raise ConfigError(f"drop --rollout-top-p {top_p}: slime would then replay each sample's top-p nucleus token "
                          "ids, which the gateway does not record (its clients choose their own top_p)")
    if settings.get("use_rollout_routing_replay"):
        raise ConfigError("drop --use-rollout-routing-replay: the trainer would replay each token's routed experts, "
                          "which the gateway does not record")


def check_agent(settings: Mapping[str, Any]) -> None:
    """The settings slime cannot run with the agents' list-of-steps results (module doc)."""
    if settings.get("partial_rollout"):
        raise ConfigError("drop --partial-rollout: the agent generate function's episodes end whole, and slime's abort "
                          "reads each group member as one Sample (an episode is a list of step samples)")
    if settings.get("group_rm"):
        raise ConfigError("drop --group-rm: the agent generate function rewards each step itself, and slime's group "
                          "reward sets .reward on each group member (an episode is a list of step samples)")
    if settings.get("rollout_sample_hook_path") and settings.get("rollout_function_path") == FULLY_ASYNC_ROLLOUT:
        raise ConfigError("drop --rollout-sample-hook-path with the fully-async rollout: the hooks rebuild each episode "
                          "as a plain list, and fully-async orders groups by their members' index")
    path = str(settings.get("dynamic_sampling_filter_path") or "")
    if path.startswith(SLIME_FILTERS):
        raise ConfigError(f"--dynamic-sampling-filter-path {path} reads each group member as one Sample (an episode "
                          f"is a list of step samples): use {AGENT_FILTER}")


def _our_loss(settings: Mapping[str, Any]) -> bool:
    return settings.get("loss_type") == "custom_loss" and settings.get("custom_loss_function_path") == POLICY_LOSS
