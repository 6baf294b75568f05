"""Loss math as pure torch: PPO clip, advantages (binary, OPD, combined), top-K reverse KL, KL to a reference, importance-ratio truncation.

No slime or Megatron import. Every function works on one sample's 1-D response tensors
(response tokens only, the loss mask kept apart), the shapes slime hands a loss; the
glue in ``slime_openclaw.slime`` and the local trainer call them and reduce with the
loss mask (``make_sum_of_sample_mean`` reproduces slime's reduction).
"""

from slime_openclaw.losses.advantages import AdvantageConfig, combined_advantages, opd_term, shape_advantages
from slime_openclaw.losses.kl import KL_TYPES, approx_kl
from slime_openclaw.losses.offpolicy import StalenessPolicy, truncated_importance_weights
from slime_openclaw.losses.ppo import PPOClipOutput, ppo_clip_loss
from slime_openclaw.losses.reduce import make_sum_of_sample_mean, masked_mean, masked_sum
from slime_openclaw.losses.topk import topk_reverse_kl

__all__ = [
    "KL_TYPES",
    "AdvantageConfig",
    "PPOClipOutput",
    "StalenessPolicy",
    "approx_kl",
    "combined_advantages",
    "make_sum_of_sample_mean",
    "masked_mean",
    "masked_sum",
    "opd_term",
    "ppo_clip_loss",
    "shape_advantages",
    "topk_reverse_kl",
    "truncated_importance_weights",
]
