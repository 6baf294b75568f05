"""The local trainer's settings: one frozen ``TrainerConfig``, validated on construction.

``TrainerConfig.from_openclaw`` derives the loss weights, clip and staleness bound from the
run's ``OpenClawConfig`` so the local trainer and the slime path train the same objective
(method ``opd`` with ``openclaw_teacher_topk > 0`` becomes ``opd_topk``). Nothing here
trains, reads files or talks to the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.local.training.methods import METHODS
from slime_openclaw.local.training.weight_sync import PUSH_MODES, PushMode
from slime_openclaw.losses import KL_TYPES, AdvantageConfig, StalenessPolicy
from slime_openclaw.types import Method


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of the local trainer (see the module doc for the objective)."""

    checkpoint_dir: str
    """Where checkpoints go (``step_NNNNNNNN/`` directories); resume reads the newest."""
    method: str = "combine"
    """``binary``, ``opd``, ``opd_topk`` or ``combine``."""
    batch_size: int = 8
    """Samples per step."""
    min_batch: int = 1
    """After ``wait_s`` a step runs on fewer than ``batch_size`` if at least this many arrived."""
    wait_s: float = 30.0
    """How long a step waits for ``batch_size`` samples (0: take what is READY now)."""
    poll_s: float = 0.5
    """Journal polling interval while waiting."""
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    """Max global gradient norm (0: no clipping; the norm is still reported)."""
    eps_clip: float = 0.2
    eps_clip_high: float = 0.28
    w_rl: float = 1.0
    """Weight of the reward term."""
    w_opd: float = 1.0
    """Weight of the teacher - old term (``opd_topk``: of the top-K reverse KL)."""
    opd_clip: float | None = None
    opd_scale: float = 1.0
    normalize_advantages: bool = False
    kl_coef: float = 0.0
    """Weight of the KL-to-reference penalty (slime's ``--kl-loss-coef``; 0: none, no reference
    model is loaded). The reference is the base policy the trainer started from."""
    kl_type: str = "low_var_kl"
    """Its estimator (slime's ``--kl-loss-type``): ``k1``, ``k2``, ``k3`` or ``low_var_kl``."""
    temperature: float = 1.0
    """The rollout temperature: log-probs are ``log_softmax(logits / T)``, as the engine's."""
    staleness: StalenessPolicy = field(default_factory=StalenessPolicy)
    keep_checkpoints: int = 2
    push: PushMode = "in_place"
    """Engine update: ``in_place``/``retract`` pause mode, ``swap`` (no pause), ``none``."""
    threads: int = 1
    """torch intra-op threads of the training thread (more only pays on idle cores: on a
    busy 2-core machine two threads made a step 6x slower than one)."""
    consumer: str = "local-trainer"
    """Consumer name in the journal."""
    max_consecutive_failures: int = 3
    """``run`` gives up (raises) after this many failed steps in a row."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"trainer method must be one of {list(METHODS)}, got {self.method!r}")
        if self.push not in PUSH_MODES:
            raise ConfigError(f"trainer push must be one of {list(PUSH_MODES)}, got {self.push!r}")
        if not (1 <= self.min_batch <= self.batch_size):
            raise ConfigError(f"need 1 <= min_batch <= batch_size, got {self.min_batch}, {self.batch_size}")
        positive = {"lr": self.lr, "temperature": self.temperature, "poll_s": self.poll_s}
        non_negative = {"wait_s": self.wait_s, "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
                        "kl_coef": self.kl_coef}
        if self.kl_type not in KL_TYPES:
            raise ConfigError(f"trainer kl_type must be one of {list(KL_TYPES)}, got {self.kl_type!r}")
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"trainer {name} must be > 0, got {value}")
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"trainer {name} must be >= 0, got {value}")
        if self.keep_checkpoints < 1 or self.threads < 1 or self.max_consecutive_failures < 1:
            raise ConfigError("keep_checkpoints, threads and max_consecutive_failures must be >= 1")
        try:
            self.advantage_config()
        except ValueError as exc:
            raise ConfigError(f"trainer advantage settings: {exc}") from exc

    def advantage_config(self) -> AdvantageConfig:
        """The advantage shaping (OPD weight 0 for ``opd_topk``: the KL term carries it)."""
        return AdvantageConfig(
            w_rl=self.w_rl,
            w_opd=0.0 if self.method == "opd_topk" else self.w_opd,
            opd_clip=self.opd_clip,
            opd_scale=self.opd_scale,
            normalize=self.normalize_advantages,
        )

    @classmethod
    def from_openclaw(cls, config: OpenClawConfig, checkpoint_dir: str, **overrides: Any) -> TrainerConfig:
        """The trainer settings implied by the run's config (weights, clip, staleness)."""
        method = config.method.value
        if config.method is Method.OPD and config.teacher.topk:
            method = "opd_topk"
        values: dict[str, Any] = {
            "checkpoint_dir": checkpoint_dir,
            "method": method,
            "w_rl": config.rl_weight,
            "w_opd": config.opd_weight,
            "opd_clip": config.opd_clip,
            "opd_scale": config.opd_scale,
            "staleness": StalenessPolicy(max_staleness=config.max_staleness, tis_cap=config.tis_clip or 2.0),
        }
        values.update(overrides)
        return cls(**values)
