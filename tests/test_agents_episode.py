"""Episodes through the real gateway: one session per episode, next states = the environment's
answers, the outcome on the session, step rewards by the documented formula, no harness actions."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from slime_openclaw.agents.driver import DriverSettings, run_episode
from slime_openclaw.agents.rewards import RewardWeights, step_reward
from slime_openclaw.agents.stage import EpisodeSignals
from slime_openclaw.config_agent import AgentConfig
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.signals.judge import LLMJudge
from slime_openclaw.signals.pipeline import SignalPipeline
from slime_openclaw.types import Method, NextStateKind, TurnState
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine
from tests.toy_env import CounterEnv


def policy(actions: Sequence[str]):
    """A scripted policy: the i-th reply of an episode is ``actions[i]`` (i = tool results so far)."""
    def script(prompt: tuple[int, ...]) -> list[int]:
        seen = "".join(chr(t) for t in prompt).count("<tool>")
        return reply_ids(actions[min(seen, len(actions) - 1)])
    return script


ADD2 = '[[call add {"x": 2}]]'


def settings(api) -> DriverSettings:
    return DriverSettings(base_url=str(api.base_url), model="tiny", api_key="unused", max_turns=6)


async def test_episode_is_one_session_with_env_answers_as_next_states_and_the_outcome() -> None:
    journal = MemoryJournal()
    async with running_gateway(ScriptedEngine(policy([ADD2, ADD2, "done"])), journal=journal) as (api, _):
        env = CounterEnv()
        episode = await run_episode(env, {"target": 4}, settings(api), episode_id="ep-a", group="t4")
    assert episode.end_reason == "done" and [s.turn_index for s in episode.steps] == [0, 1, 2]
    assert {r.turn.session_id for r in journal.iter_turns()} == {"ep-a"}
    for step in episode.steps[:2]:
        record = journal.get(f"ep-a:{step.turn_index}")
        assert record.state is TurnState.OBSERVED and record.next_state.kind is NextStateKind.TOOL
        assert [(m["role"], m["content"], m["tool_call_id"]) for m in record.next_state.messages] == \
            [(m["role"], m["content"], m["tool_call_id"]) for m in step.answer]
    outcome = journal.get_outcome("ep-a")
    assert outcome is not None and outcome.score == 1.0 and outcome.passed and episode.outcome_recorded
    assert env.replies == [s.reply for s in episode.steps]  # the driver sent nothing of its own


async def test_step_rewards_follow_the_formula_and_are_recorded_by_turn() -> None:
    journal = MemoryJournal()
    config = AgentConfig(outcome_weight=2.0, prm_weight=0.5, normalization="none")
    actions = ['[[call add {"x": 3}]]', '[[call add {"x": "oops"}]]', ADD2, ADD2]  # ends at max_steps
    async with running_gateway(ScriptedEngine(policy(actions)), journal=journal) as (api, _):
        episode = await run_episode(CounterEnv(max_steps=4), {"target": 4}, settings(api), episode_id="ep-b",
                                    group="t4")
    assert episode.end_reason == "done" and len(episode.steps) == 4
    score = journal.get_outcome("ep-b").score
    assert score == 0.0  # total 7, and it used every step
    stage = EpisodeSignals(journal, None, "prm", config)
    judged = await stage.judge_episode(episode)
    votes = [j.verdict.votes for j in judged]
    assert [j.step.turn_index for j in judged] == [0, 1, 2, 3] and votes == [(1,), (-1,), (1,), (1,)]
    expected = [2.0 * (2 * score - 1) + 0.5 * v[0] for v in votes]
    assert [j.raw_reward for j in judged] == pytest.approx(expected)
    assert await stage.record_group([episode]) == 4
    samples = {s.sample.turn_index: s.sample for s in journal.iter_samples()}
    assert {i: s.reward for i, s in samples.items()} == pytest.approx(dict(enumerate(expected)))
    assert all(s.method is Method.BINARY and s.response_ids == journal.get(f"ep-b:{i}").turn.response_ids
               for i, s in samples.items())
    closing = journal.get("ep-b:4")  # the closing request's own turn is never trained
    assert closing.state is TurnState.DISCARDED and closing.discard_reason == "episode closing turn"


def test_weights_are_applied() -> None:
    assert step_reward(1.0, (1, -1, None, 1), RewardWeights(outcome=0.0, prm=3.0)) == pytest.approx(1.0)
    assert step_reward(0.25, (), RewardWeights(outcome=4.0, prm=9.0)) == pytest.approx(-2.0)
    assert step_reward(0.25, (1,), RewardWeights(outcome=4.0, prm=0.0)) == pytest.approx(-2.0)


class Votes:
    """A judge model whose answers are scripted: m votes, one answer each, in turn."""

    name = "scripted"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers, self.calls = list(answers), 0

    async def complete(self, messages) -> str:
        self.calls += 1
        text = messages[-1]["content"]
        assert "## ASSISTANT RESPONSE" in text and "total=" in text  # the step and the environment's answer
        return self.answers[(self.calls - 1) % len(self.answers)]


async def test_llm_prm_votes_are_honoured_when_the_environment_is_silent() -> None:
    journal = MemoryJournal()
    async with running_gateway(ScriptedEngine(policy([ADD2, ADD2, "done"])), journal=journal) as (api, _):
        episode = await run_episode(CounterEnv(silent=True), {"target": 4}, settings(api), episode_id="ep-c",
                                    group="t4")
    model = Votes(["\\boxed{1}", "\\boxed{-1}", "\\boxed{1}"])
    pipeline = SignalPipeline(Method.BINARY, judge=LLMJudge(model, votes=3))
    judged = await EpisodeSignals(journal, pipeline, "prm", AgentConfig(normalization="none")).judge_episode(episode)
    answered = [j for j in judged if j.step.answer]
    assert [j.verdict.votes for j in answered] == [(1, -1, 1)] * 2 and model.calls == 6
    assert answered[0].raw_reward == pytest.approx(1.0 * (2 * 1.0 - 1) + 1.0 * (1 / 3))
    assert judged[-1].verdict is None  # the final reply had no answer: nothing for the judge to read


async def test_a_failed_request_ends_the_episode_without_any_action_for_the_agent() -> None:
    journal = MemoryJournal()

    def script(prompt: tuple[int, ...]) -> list[int]:
        if "".join(chr(t) for t in prompt).count("<tool>"):
            raise RuntimeError("engine down")
        return reply_ids(ADD2)

    async with running_gateway(ScriptedEngine(script), journal=journal) as (api, _):
        env = CounterEnv()
        episode = await run_episode(env, {"target": 2}, settings(api), episode_id="ep-d", group="t2")
    assert episode.end_reason == "request_failed" and episode.requests_failed == 1
    assert len(env.replies) == 1  # only the agent's own reply reached the environment
    assert episode.outcome.score == 1.0 and episode.outcome.details == {"total": 2}  # what the agent did
    assert journal.get_outcome("ep-d").score == 1.0
