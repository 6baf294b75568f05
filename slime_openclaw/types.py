"""Contract types shared by every loop: a served turn, its next state, the verdicts and
hints drawn from it, and the training sample it becomes.

Defined once and frozen. Token lists are plain ``list[int]`` / ``list[float]`` so that
every object pickles (it travels through Ray on the slime path) and serializes to JSON
(the journal and `journal export`). Nothing here imports torch, aiohttp or slime.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""One OpenAI chat message as the client sent it (role, content, tool_calls, ...)."""


class TurnType(str, enum.Enum):
    """Whether a turn may be trained on."""

    MAIN = "main"
    """Part of the session's own conversation: trainable."""
    SIDE = "side"
    """An auxiliary call (title generation, summarization, ...): served and recorded, never trained."""


class TurnState(str, enum.Enum):
    """Where a turn is in its life. Moves only forward; the state written last is the truth."""

    SERVED = "served"
    """The client got its answer; the turn waits for its next state."""
    OBSERVED = "observed"
    """The next state is attached (or the session ended without one)."""
    JUDGED = "judged"
    """Evaluative and directive signals are attached."""
    READY = "ready"
    """At least one training sample was produced and waits for a trainer."""
    CONSUMED = "consumed"
    """Every sample of the turn was acknowledged by a trainer."""
    DISCARDED = "discarded"
    """Terminal: the turn yields no sample; ``Turn.discard_reason`` says why."""


class NextStateKind(str, enum.Enum):
    """What produced the next state."""

    USER = "user"
    """The user's reply."""
    TOOL = "tool"
    """One or more tool results."""
    ENVIRONMENT = "environment"
    """An environment observation (terminal output, GUI change, test verdict)."""
    SESSION_END = "session_end"
    """The session ended with no further message."""


class FinishReason(str, enum.Enum):
    """Why generation of a response stopped, as the engine reports it."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    TOOL_CALLS = "tool_calls"
    """The reply ended in tool calls (what the client was told; recorded, never reported by an engine)."""


@dataclass(frozen=True)
class NextState:
    """Everything that followed our reply before the agent acted again."""

    kind: NextStateKind
    """User reply, tool results, environment observation, or session end."""
    messages: tuple[Message, ...] = ()
    """All messages after our reply, in order (several for parallel tool results)."""
    continuous: bool = True
    """False when the new request did not extend the recorded history (edited or compacted):
    ``messages`` is then empty and the turn gets no next state."""
    break_reason: str | None = None
    """Why continuity failed, when it did."""
    observed_at: float = 0.0
    """Unix time the next state was seen."""
    dropped_messages: int = 0
    """Trailing messages of the turn's prompt the client no longer sent (per-request context
    a client injects and does not keep, like OpenClaw's)."""
    reply_dropped: bool = False
    """The client's history went on from the turn's prompt without our reply (it discarded the
    reply, e.g. mini-swe-agent on a format error): a strong sign the reply was bad."""


@dataclass(frozen=True)
class Turn:
    """One served request/response pair, recorded token-exactly."""

    session_id: str
    """Session this turn belongs to."""
    turn_index: int
    """0-based position of the turn within its session."""
    turn_type: TurnType
    """Main (trainable) or side."""
    messages: tuple[Message, ...]
    """The request's messages as received (empty when only token ids are retained)."""
    tools: tuple[dict[str, Any], ...]
    """The request's tool definitions."""
    prompt_ids: tuple[int, ...]
    """Token ids the engine was given: the chat template rendered by the gateway."""
    response_ids: tuple[int, ...]
    """Token ids the engine generated, exactly, including the closing end-of-turn token."""
    response_log_probs: tuple[float, ...]
    """Behaviour log-probs, one per response token (see engine docs for the convention)."""
    weight_versions: tuple[int, ...]
    """Weight version that produced each response token (changes across a weight update)."""
    finish_reason: FinishReason
    """Why the reply ended, as the client was told (``tool_calls`` for a reply that calls tools;
    never ``abort``: aborted requests are resumed)."""
    response_message: Message
    """The assistant message we answered with, parsed from ``response_ids``."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """Sampling parameters used (temperature, top_p, max_new_tokens, ...)."""
    model: str = ""
    """Model name the client asked for."""
    created_at: float = 0.0
    """Unix time the answer was complete."""
    turn_id: str = ""
    """Stable id: ``f"{session_id}:{turn_index}"`` unless the store assigns one."""
    client_key: str = ""
    """The session key the client sent (``X-Session-Id``, ``metadata.session_id``,
    ``prompt_cache_key`` or ``user``); empty for sessions matched by history."""
    session_epoch: int = 0
    """How many earlier sessions of ``client_key`` ended before this one started (a reused key
    starts a new epoch, ``session_id`` = ``f"{client_key}#{epoch}"`` past the first)."""

    @property
    def key(self) -> str:
        """The idempotency key of the turn."""
        return self.turn_id or f"{self.session_id}:{self.turn_index}"


@dataclass(frozen=True)
class Verdict:
    """Evaluative signal: how good the action was, from one judge."""

    score: int
    """Final score in {+1, 0, -1}: majority of votes; ties and all-failed give 0."""
    votes: tuple[int | None, ...] = ()
    """Each vote; None for a vote that failed (timeout, engine error, unparsable)."""
    rationale: str = ""
    """Short reason, when the judge gives one (not logged by default)."""
    judge: str = ""
    """Name of the judge that produced the verdict."""
    failures: int = 0
    """Number of votes that failed."""
    parse_failures: int = 0
    """Number of votes whose answer could not be parsed."""


@dataclass(frozen=True)
class Hint:
    """Directive signal: how the action should have been different."""

    text: str
    """The hint to add to the teacher context; empty when no hint was accepted."""
    accepted: bool
    """Whether the hint passed selection (non-trivial, voted +1)."""
    votes: tuple[int | None, ...] = ()
    """Each vote (+1 hint, -1 no hint, None failed)."""
    source: str = ""
    """Name of the extractor that produced the hint."""


class Method(str, enum.Enum):
    """Training method a sample is produced for."""

    BINARY = "binary"
    OPD = "opd"
    COMBINE = "combine"


@dataclass(frozen=True)
class TrainingSample:
    """One trainable sample, ready for slime or the local trainer.

    ``reward`` is exactly 0.0 when the sample carries no evaluative signal, and
    ``teacher_log_probs`` is None when it carries no directive signal: the combined
    advantage then has that term exactly zero.
    """

    session_id: str
    """Session of the source turn."""
    turn_index: int
    """Index of the source turn."""
    method: Method
    """Method this sample was produced for."""
    prompt_ids: tuple[int, ...]
    """Prompt token ids (not trained)."""
    response_ids: tuple[int, ...]
    """Response token ids, exactly as generated (trained)."""
    loss_mask: tuple[int, ...]
    """One per response token: 1 trained, 0 not."""
    rollout_log_probs: tuple[float, ...]
    """Behaviour log-probs, one per response token."""
    weight_versions: tuple[int, ...]
    """Weight version per response token."""
    reward: float = 0.0
    """Evaluative reward (judge score), 0.0 when absent."""
    teacher_log_probs: tuple[float, ...] | None = None
    """Teacher log-probs on the exact response tokens under the hint context, or None."""
    teacher_topk_ids: tuple[tuple[int, ...], ...] | None = None
    """Per response token, the teacher's top-K token ids (top-K distillation only)."""
    teacher_topk_log_probs: tuple[tuple[float, ...], ...] | None = None
    """Per response token, the teacher's top-K log-probs, aligned with ``teacher_topk_ids``."""
    sample_id: str = ""
    """Stable id assigned by the journal."""

    @property
    def tokens(self) -> tuple[int, ...]:
        """Prompt followed by response: what slime's ``Sample.tokens`` holds."""
        return self.prompt_ids + self.response_ids


@dataclass(frozen=True)
class SessionOutcome:
    """The verifiable result of a whole session (a general agent's episode), known at its end.

    Recorded on the session in the journal (the episode driver, or an outside harness over
    ``POST /v1/sessions/{id}/outcome``); step rewards combine it with each turn's process score.
    """

    session_id: str
    """Session (episode) the outcome belongs to."""
    score: float
    """Share of checks passed, in [0, 1]."""
    passed: bool | None = None
    """Whether the episode counts as a success; None when the recorder did not say."""
    details: dict[str, Any] = field(default_factory=dict)
    """What was measured (per-check results, expected and given answer, ...)."""
    recorded_at: float = 0.0
    """Unix time the outcome was recorded."""

    def __post_init__(self) -> None:
        if not self.session_id:
            raise ValueError("a session outcome needs a session id")
        if isinstance(self.score, bool) or not 0.0 <= self.score <= 1.0:  # NaN fails both bounds
            raise ValueError(f"outcome score must be a number in [0, 1], got {self.score!r}")
