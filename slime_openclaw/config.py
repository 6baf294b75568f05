"""The one typed, frozen configuration of slime-openclaw, parsed once.

Every setting has one flat key ``openclaw_<name>`` (top-level settings) or
``openclaw_<section>_<name>`` (judge, hint, teacher, gateway, journal). Those keys travel
through slime as top-level keys of the ``--custom-config-path`` YAML, which slime sets as
attributes on ``args`` in every process; :meth:`OpenClawConfig.from_args` reads them back.
Recipes and ``launch --set`` use the same keys. This module is the only place that reads
them (and the only one that reads the gateway key's environment variable); everything
else receives an ``OpenClawConfig`` or one of its sections.

Unknown or misspelled keys are an error listing the valid keys: slime itself would
silently ignore them. Nothing here imports slime, torch or aiohttp.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.config_agent import AgentConfig
from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.config_values import coerce, is_loopback, positive, resolve_mode
from slime_openclaw.config_values import load_yaml_mapping as load_yaml_mapping
from slime_openclaw.config_values import parse_override as parse_override
from slime_openclaw.errors import ConfigError
from slime_openclaw.types import Method

PREFIX = "openclaw_"

ENDPOINT_HELP = (
    "an http(s) URL, 'slime:NAME' for a model slime serves through --sglang-config, "
    "or 'policy' for the policy's own engine"
)
SIGNAL_MODES = ("auto", "rules", "llm", "rules+llm")
"""Which judges / hint extractors run: ``rules`` only, the model only (``llm``), rules first then
the model (``rules+llm``), or ``auto``: ``rules+llm`` when endpoints are set, ``rules`` otherwise."""
HINT_PLACEMENTS = ("user_append", "system")


def _check_endpoint(key: str, value: str) -> None:
    if value == "policy" or (value.startswith("slime:") and len(value) > len("slime:")):
        return
    if value.startswith(("http://", "https://")):
        return
    raise ConfigError(f"{key}: {value!r} is not {ENDPOINT_HELP}")


@dataclass(frozen=True)
class JudgeConfig:
    """The evaluative signal: a PRM judge voting +1 / -1 / 0 on (response, next state)."""

    mode: str = "auto"
    """``rules``, ``llm``, ``rules+llm`` (rules decide when the evidence is explicit, the model
    otherwise) or ``auto`` (``rules+llm`` with endpoints, ``rules`` without)."""
    endpoints: tuple[str, ...] = ()
    """Judge engines, each an http(s) URL, ``slime:NAME`` or ``policy`` (the policy's own
    engine); votes are spread over them."""
    protocol: str = "openai"
    """How URLs are spoken to: ``openai`` (chat completions) or ``sglang`` (native /generate).
    ``slime:NAME`` and ``policy`` endpoints always use the native protocol."""
    tokenizer: str = ""
    """Tokenizer/chat-template directory of a natively spoken judge model; empty: the
    policy's (right for ``policy`` and for judges of the same model family)."""
    model: str = "judge"
    """Model name sent to an OpenAI-compatible judge."""
    votes: int = 3
    """m: votes per turn; the majority wins, ties and all-failed votes give 0."""
    temperature: float = 0.6
    """Sampling temperature of each vote."""
    max_new_tokens: int = 512
    """Token budget of each judge and hint vote."""
    timeout_s: float = 60.0
    """Per-vote timeout; a timed-out vote counts as failed, never stalls training."""
    max_retries: int = 2
    """Retries of a failed vote before it counts as failed."""
    retry_backoff_s: float = 0.5
    """Wait before retry i of a vote is ``retry_backoff_s * 2**i``."""
    context_chars: int = 4000
    """Each section the judge sees (task, response, next state) is cut to this many characters."""
    api_key: str = ""
    """Bearer key for an external judge URL (empty: none)."""


@dataclass(frozen=True)
class HintConfig:
    """The directive signal: hint votes that may yield a hindsight hint for the teacher."""

    mode: str = "auto"
    """``rules`` (explicit user corrections), ``llm``, ``rules+llm`` (a correction first, else
    the model's hint) or ``auto`` (``rules+llm`` with endpoints, ``rules`` without)."""
    endpoints: tuple[str, ...] = ()
    """Hint engines; empty means the judge's endpoints."""
    votes: int = 3
    """m: hint votes per turn."""
    min_chars: int = 11
    """A hint shorter than this is trivial and rejected (the reference keeps hints over 10 chars)."""
    max_chars: int = 600
    """Hints are cut to this many characters before entering the teacher context."""
    placement: str = "user_append"
    """Where the hint goes in the teacher context: ``user_append`` (after the last user message,
    under a marker line) or ``system`` (in the leading system message)."""


@dataclass(frozen=True)
class TeacherConfig:
    """Who scores the response tokens under the hint-enhanced context."""

    endpoint: str = "policy"
    """``policy``: the current policy (slime's actor router); otherwise a frozen model
    (``slime:NAME`` or an SGLang URL speaking the native protocol)."""
    temperature: float | None = None
    """Temperature the teacher's log-probs are computed at; empty: each turn's own sampling
    temperature (the convention of the rollout log-probs, so the two are comparable)."""
    topk: int = 0
    """K > 0: also fetch the teacher's top-K log-probs per token for top-K distillation."""
    topk_dir: str = ""
    """Directory (visible to every training node) where the rollout function leaves top-K
    tensors for the trainer; required when ``topk > 0``."""


@dataclass(frozen=True)
class GatewayConfig:
    """The OpenAI-compatible front door started inside slime's RolloutManager."""

    host: str = "127.0.0.1"
    """Bind address (``node``: the IP of the node slime's RolloutManager runs on); anything
    but loopback requires an API key."""
    port: int = 30080
    """Port of the gateway."""
    api_key: str = ""
    """Key clients must send (``Authorization: Bearer``); empty allowed on loopback only."""
    api_key_env: str = ""
    """Name of an environment variable holding the key (read here, once), instead of
    writing the key into a YAML file."""
    model_name: str = "policy"
    """Model name the gateway reports and accepts."""
    max_inflight: int = 256
    """Requests served concurrently before clients get 429 with Retry-After."""
    session_ttl_s: float = 1800.0
    """Idle seconds after which a session ends (its last turn gets a session-end next state)."""
    max_sessions: int = 10_000
    """Open sessions at most (the least recently active ends first)."""
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` names accepted besides loopback names and the bind address (``*``: any);
    empty with an API key: any (the key is the guard)."""
    max_body_bytes: int = 0
    """Larger request bodies get 413; 0: 1 MiB plus 32 bytes per context token."""
    body_timeout_s: float = 30.0
    """Seconds a request body may take to arrive (408 after)."""
    idle_timeout_s: float = 15.0
    """Seconds a connection may stay without a complete request header (new, partial or
    idle keep-alive) before it is closed."""


@dataclass(frozen=True)
class JournalConfig:
    """The durable journal shared by gateway, signal workers and rollout function."""

    path: str = ""
    """SQLite file, or ``:memory:``; empty: ``$XDG_DATA_HOME/slime-openclaw/journal.sqlite``
    (else ``~/.local/share/...``). Relative paths resolve against the working directory."""
    keep_text: bool = True
    """False: drop text once a turn is judged; keep token ids only."""
    retention_hours: float | None = None
    """Delete consumed/discarded turns this long after they finished; None keeps them."""
    claim_lease_s: float = 60.0
    """A turn a signal worker claimed and did not record within this time (the worker died)
    may be claimed again; recording is idempotent, so a slow worker only costs compute."""
    drain_lease_s: float = 3600.0
    """A drained sample not acknowledged within this time is handed out again. Must cover
    two training steps (samples are acknowledged two rollout steps later)."""


@dataclass(frozen=True)
class OpenClawConfig:
    """Everything slime-openclaw is configured with; frozen and picklable."""

    method: Method = Method.COMBINE
    """binary (evaluative only), opd (directive only) or combine (both)."""
    rl_weight: float = 1.0
    """w_rl: weight of the reward term of the advantage."""
    opd_weight: float = 1.0
    """w_opd: weight of the teacher - old log-prob term (top-K: of the reverse KL)."""
    opd_clip: float | None = None
    """Clamp the teacher-student gap to [-c, c] nats (combine); None: unclipped."""
    opd_scale: float = 1.0
    """Factor on the clamped gap (combine)."""
    max_staleness: int = 4
    """Samples whose oldest token is more than this many weight versions behind the newest
    version seen are dropped at drain time (acknowledged, never trained)."""
    tis_clip: float = 2.0
    """Cap of the truncated importance weight ``exp(old_lp - rollout_lp)`` in our loss hook
    (0 disables it). slime's built-in loss uses ``--use-tis --tis-clip`` instead."""
    drain_timeout_s: float = 0.0
    """How long a rollout step waits for enough READY samples; 0 waits forever."""
    drain_poll_s: float = 1.0
    """Polling interval of the journal while waiting for samples."""
    signal_workers: int = 4
    """Concurrent turns judged by the signal workers."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    hint: HintConfig = field(default_factory=HintConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    env: EnvPoolConfig = field(default_factory=EnvPoolConfig)

    @property
    def uses_judge(self) -> bool:
        """Whether turns get an evaluative signal."""
        return self.method in (Method.BINARY, Method.COMBINE)

    @property
    def uses_teacher(self) -> bool:
        """Whether turns get a directive signal (hint + teacher log-probs)."""
        return self.method in (Method.OPD, Method.COMBINE)

    @property
    def hint_endpoints(self) -> tuple[str, ...]:
        """Endpoints of the hint votes (the judge's unless set)."""
        return self.hint.endpoints or self.judge.endpoints

    @property
    def judge_mode(self) -> str:
        """The judge mode with ``auto`` resolved: ``rules``, ``llm`` or ``rules+llm``."""
        return resolve_mode(self.judge.mode, self.judge.endpoints)

    @property
    def hint_mode(self) -> str:
        """The hint mode with ``auto`` resolved: ``rules``, ``llm`` or ``rules+llm``."""
        return resolve_mode(self.hint.mode, self.hint_endpoints)

    def journal_location(self, environ: Mapping[str, str] | None = None) -> str:
        """``openclaw_journal_path``, or the default file under the user's data directory."""
        if self.journal.path:
            return self.journal.path
        from slime_openclaw.journal.location import default_journal_path

        return str(default_journal_path(environ))

    def gateway_api_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The gateway key: ``gateway.api_key``, else the variable named by ``api_key_env``."""
        if self.gateway.api_key or not self.gateway.api_key_env:
            return self.gateway.api_key
        env = os.environ if environ is None else environ
        value = env.get(self.gateway.api_key_env, "")
        if not value:
            raise ConfigError(f"openclaw_gateway_api_key_env: variable {self.gateway.api_key_env} is not set")
        return value

    # -- parsing ----------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> OpenClawConfig:
        """Build from flat ``openclaw_*`` keys; unknown keys raise ``ConfigError``."""
        unknown = sorted(k for k in values if k not in _KEYS)
        if unknown:
            raise ConfigError(_unknown_message(unknown))
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        top: dict[str, Any] = {}
        for key, raw in values.items():
            section, name, hint = _KEYS[key]
            value = coerce(key, raw, hint)
            (sections[section] if section else top)[name] = value
        for name, section_cls in _SECTIONS.items():
            top[name] = section_cls(**sections[name])
        config = cls(**top)
        config.validate()
        return config

    @classmethod
    def from_args(cls, args: Any) -> OpenClawConfig:
        """Build from a slime ``args`` namespace (keys set by ``--custom-config-path``).

        The custom-config file itself is re-read, when there is one, so that a misspelled
        key without the ``openclaw_`` prefix is reported too.
        """
        attrs = vars(args) if not isinstance(args, Mapping) else dict(args)
        path = attrs.get("custom_config_path")
        if path:
            check_custom_config_keys(load_yaml_mapping(path))
        return cls.from_mapping({k: v for k, v in attrs.items() if k.startswith(PREFIX)})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> OpenClawConfig:
        """Build from a custom-config YAML file (other plugins' keys are ignored)."""
        data = load_yaml_mapping(path)
        check_custom_config_keys(data)
        return cls.from_mapping({k: v for k, v in data.items() if k.startswith(PREFIX)})

    def to_mapping(self) -> dict[str, Any]:
        """Flat ``openclaw_*`` keys with plain YAML values; ``from_mapping`` inverts it."""
        out: dict[str, Any] = {}
        for key, (section, name, _hint) in _KEYS.items():
            owner = getattr(self, section) if section else self
            value = getattr(owner, name)
            if isinstance(value, Method):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    def validate(self) -> None:
        """Cross-field checks; raises ``ConfigError`` with the offending key."""
        for key in ("openclaw_rl_weight", "openclaw_opd_weight", "openclaw_opd_scale", "openclaw_tis_clip"):
            value = self.to_mapping()[key]
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key}: must be a finite number >= 0, got {value}")
        if self.opd_clip is not None and not (self.opd_clip > 0 and math.isfinite(self.opd_clip)):
            raise ConfigError(f"openclaw_opd_clip: must be empty or a number > 0, got {self.opd_clip}")
        positive("openclaw_judge_votes", self.judge.votes)
        positive("openclaw_hint_votes", self.hint.votes)
        positive("openclaw_signal_workers", self.signal_workers)
        positive("openclaw_gateway_max_inflight", self.gateway.max_inflight)
        positive("openclaw_gateway_max_sessions", self.gateway.max_sessions)
        if self.gateway.max_body_bytes < 0 or not (self.gateway.body_timeout_s > 0 and self.gateway.idle_timeout_s > 0):
            raise ConfigError("openclaw_gateway_max_body_bytes must be >= 0, openclaw_gateway_body_timeout_s and "
                              "openclaw_gateway_idle_timeout_s > 0")
        if not (self.journal.claim_lease_s > 0 and self.journal.drain_lease_s > 0):
            raise ConfigError("openclaw_journal_claim_lease_s and openclaw_journal_drain_lease_s must be > 0")
        if not self.gateway.session_ttl_s > 0:
            raise ConfigError(f"openclaw_gateway_session_ttl_s: must be > 0, got {self.gateway.session_ttl_s}")
        if self.max_staleness < 0 or self.teacher.topk < 0:
            raise ConfigError("openclaw_max_staleness and openclaw_teacher_topk must be >= 0")
        if not 0 < self.gateway.port < 65536:
            raise ConfigError(f"openclaw_gateway_port: {self.gateway.port} is not a TCP port")
        if self.judge.protocol not in ("openai", "sglang"):
            raise ConfigError(f"openclaw_judge_protocol: must be openai or sglang, got {self.judge.protocol!r}")
        self._validate_signals()
        self._validate_endpoints()
        if self.teacher.topk and not self.uses_teacher:
            raise ConfigError("openclaw_teacher_topk > 0 needs openclaw_method opd or combine")
        if self.teacher.topk and not self.teacher.topk_dir:
            raise ConfigError("openclaw_teacher_topk > 0 needs openclaw_teacher_topk_dir (shared by all nodes)")
        if not is_loopback(self.gateway.host) and not (self.gateway.api_key or self.gateway.api_key_env):
            raise ConfigError(
                f"openclaw_gateway_host: {self.gateway.host} is not loopback; set openclaw_gateway_api_key "
                "or openclaw_gateway_api_key_env"
            )

    def _validate_endpoints(self) -> None:
        for endpoint in self.judge.endpoints:
            _check_endpoint("openclaw_judge_endpoints", endpoint)
        for endpoint in self.hint.endpoints:
            _check_endpoint("openclaw_hint_endpoints", endpoint)
        if self.teacher.endpoint != "policy":
            _check_endpoint("openclaw_teacher_endpoint", self.teacher.endpoint)
        if self.uses_judge and "llm" in self.judge_mode and not self.judge.endpoints:
            raise ConfigError(
                f"openclaw_judge_endpoints: method {self.method.value} with judge mode {self.judge_mode} "
                "needs at least one judge (or openclaw_judge_mode: rules)"
            )
        if self.uses_teacher and "llm" in self.hint_mode and not self.hint_endpoints:
            raise ConfigError(
                f"openclaw_hint_endpoints: method {self.method.value} with hint mode {self.hint_mode} "
                "needs hint (or judge) endpoints (or openclaw_hint_mode: rules)"
            )

    def _validate_signals(self) -> None:
        for key, mode in (("openclaw_judge_mode", self.judge.mode), ("openclaw_hint_mode", self.hint.mode)):
            if mode not in SIGNAL_MODES:
                raise ConfigError(f"{key}: must be one of {', '.join(SIGNAL_MODES)}, got {mode!r}")
        if self.hint.placement not in HINT_PLACEMENTS:
            raise ConfigError(
                f"openclaw_hint_placement: must be one of {', '.join(HINT_PLACEMENTS)}, got {self.hint.placement!r}"
            )
        positive("openclaw_hint_min_chars", self.hint.min_chars)
        if self.hint.max_chars < self.hint.min_chars:
            raise ConfigError("openclaw_hint_max_chars: must be >= openclaw_hint_min_chars")
        positive("openclaw_judge_max_new_tokens", self.judge.max_new_tokens)
        positive("openclaw_judge_context_chars", self.judge.context_chars)
        if not (self.judge.timeout_s > 0 and self.judge.max_retries >= 0 and self.judge.retry_backoff_s >= 0):
            raise ConfigError(
                "openclaw_judge_timeout_s must be > 0, openclaw_judge_max_retries and "
                "openclaw_judge_retry_backoff_s >= 0"
            )
        temperature = self.teacher.temperature
        if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
            raise ConfigError(f"openclaw_teacher_temperature: must be empty or a number > 0, got {temperature}")

    def slime_models(self) -> tuple[str, ...]:
        """Names of the ``slime:NAME`` models this config expects slime to serve."""
        endpoints = (*self.judge.endpoints, *self.hint.endpoints, self.teacher.endpoint)
        return tuple(sorted({e.split(":", 1)[1] for e in endpoints if e.startswith("slime:")}))


_SECTIONS: dict[str, type] = {
    "judge": JudgeConfig,
    "hint": HintConfig,
    "teacher": TeacherConfig,
    "gateway": GatewayConfig,
    "journal": JournalConfig,
    "agent": AgentConfig,
    "env": EnvPoolConfig,
}


def _build_keys() -> dict[str, tuple[str, str, Any]]:
    """flat key -> (section or "", field name, type hint)."""
    keys: dict[str, tuple[str, str, Any]] = {}
    hints = typing.get_type_hints(OpenClawConfig)
    for f in dataclasses.fields(OpenClawConfig):
        if f.name in _SECTIONS:
            section_hints = typing.get_type_hints(_SECTIONS[f.name])
            for sf in dataclasses.fields(_SECTIONS[f.name]):
                keys[f"{PREFIX}{f.name}_{sf.name}"] = (f.name, sf.name, section_hints[sf.name])
        else:
            keys[f"{PREFIX}{f.name}"] = ("", f.name, hints[f.name])
    return keys


_KEYS = _build_keys()
VALID_KEYS: tuple[str, ...] = tuple(sorted(_KEYS))
"""Every key the configuration accepts."""


def _unknown_message(unknown: Sequence[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, VALID_KEYS, n=1, cutoff=0.75)
        parts.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return f"unknown config key(s): {', '.join(parts)}; valid keys: {', '.join(VALID_KEYS)}"


def check_custom_config_keys(data: Mapping[str, Any]) -> None:
    """Reject keys of a custom-config file that look like ours but are not valid.

    A key is ours when it starts with ``openclaw`` or is a near miss of a valid key (a
    typo that lost the prefix's spelling); keys of slime or other plugins pass.
    """
    suspicious = []
    for key in data:
        if key in _KEYS:
            continue
        if key.lower().startswith(("openclaw", "open_claw")) or difflib.get_close_matches(key, VALID_KEYS, n=1, cutoff=0.85):
            suspicious.append(key)
    if suspicious:
        raise ConfigError(_unknown_message(sorted(suspicious)))


if __name__ == "__main__":
    from slime_openclaw.config_docs import main

    raise SystemExit(main())
