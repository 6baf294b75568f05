"""Builders of turns, next states and samples for the journal tests (and the crash child)."""

from __future__ import annotations

from slime_openclaw.types import (
    FinishReason,
    Hint,
    Method,
    NextState,
    NextStateKind,
    TrainingSample,
    Turn,
    TurnType,
    Verdict,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_turn(session: str = "s1", index: int = 0, *, n_prompt: int = 12, n_response: int = 5, created_at: float = 0.0) -> Turn:
    """A main turn with distinct token ids and inexact float log-probs."""
    base = 1000 * index
    return Turn(
        session_id=session,
        turn_index=index,
        turn_type=TurnType.MAIN,
        messages=({"role": "user", "content": f"question {index} from {session} — ünïcode"},),
        tools=({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},),
        prompt_ids=tuple(range(base, base + n_prompt)),
        response_ids=tuple(range(base + 500, base + 500 + n_response)),
        response_log_probs=tuple(-0.1 * (i + 1) / 3 for i in range(n_response)),
        weight_versions=tuple(3 if i < n_response // 2 else 4 for i in range(n_response)),
        finish_reason=FinishReason.STOP,
        response_message={"role": "assistant", "content": f"answer {index}"},
        sampling={"temperature": 0.7, "max_new_tokens": 64},
        model="tiny",
        created_at=created_at,
    )


def make_next_state(text: str = "no, I meant the other one") -> NextState:
    """A user reply as next state."""
    return NextState(kind=NextStateKind.USER, messages=({"role": "user", "content": text},), observed_at=5.0)


def make_sample(turn: Turn, method: Method = Method.BINARY, *, reward: float = 1.0, topk: bool = False) -> TrainingSample:
    """A sample of ``turn`` for ``method`` (OPD/combine carry teacher log-probs, optionally top-K)."""
    n = len(turn.response_ids)
    teacher = None if method is Method.BINARY else tuple(-0.05 * (i + 1) / 7 for i in range(n))
    return TrainingSample(
        session_id=turn.session_id,
        turn_index=turn.turn_index,
        method=method,
        prompt_ids=turn.prompt_ids,
        response_ids=turn.response_ids,
        loss_mask=tuple(1 for _ in range(n)),
        rollout_log_probs=turn.response_log_probs,
        weight_versions=turn.weight_versions,
        reward=reward,
        teacher_log_probs=teacher,
        teacher_topk_ids=tuple((i, i + 1, i + 2) for i in range(n)) if topk else None,
        teacher_topk_log_probs=tuple((-0.1, -1.5, -2.25) for _ in range(n)) if topk else None,
    )


VERDICT = Verdict(score=-1, votes=(-1, -1, None), rationale="user asked again", judge="prm", failures=1)
HINT = Hint(text="Answer the question the user actually asked.", accepted=True, votes=(1, 1, -1), source="hinter")
