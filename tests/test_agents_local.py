"""The embedded agents loop end to end: pre-training data, ``agents eval`` and ``agents train``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from slime_openclaw.cli import main
from slime_openclaw.envs import EnvSpec
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.agents.pretrain import FAST_AGENT_RECIPE, collect, prepare_agent_policy
from slime_openclaw.local.training.sft import read_manifest
from slime_openclaw.types import TurnState

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_agent_policy(EnvSpec("toolcall"), recipe=FAST_AGENT_RECIPE,
                                cache_root=tmp_path_factory.mktemp("cache"), threads=1)


def test_reference_trajectories_are_real_episodes() -> None:
    from slime_openclaw.envs import builtin_tasks

    tasks = builtin_tasks("toolcall", "train")[:6]
    own = asyncio.run(collect(EnvSpec("toolcall"), tasks, FAST_AGENT_RECIPE.__class__(p_foreign=0.0, copies=1,
                                                                                      short_share=0.0)))
    assert all(t.passed for t in own)  # the reference replies solve their own tasks
    first = own[0].messages
    assert [m["role"] for m in first] == ["system", "user", "assistant", "tool", "assistant"]
    assert first[3]["content"].endswith("[exit code 0]")  # the tool's real answer
    assert own[0].train == [False, False, True, False, True]


def test_mistaken_trajectories_misread_with_the_tasks_own_numbers_and_leave_the_other_draws_alone() -> None:
    from slime_openclaw.envs import builtin_tasks
    from slime_openclaw.local.agents.pretrain import AgentPretrainRecipe

    tasks = builtin_tasks("toolcall", "train")[:20]
    mixed = asyncio.run(collect(EnvSpec("toolcall"), tasks, AgentPretrainRecipe(p_mistaken=0.5, short_share=0.5)))
    plain = asyncio.run(collect(EnvSpec("toolcall"), tasks, AgentPretrainRecipe(short_share=0.5)))
    codes = [json.loads(t.messages[-3]["tool_calls"][0]["function"]["arguments"])["code"] for t in mixed]
    mistaken = [i for i, (code, task) in enumerate(zip(codes, tasks, strict=True)) if code == task["mistaken_code"]]
    assert 0 < len(mistaken) < len(tasks)
    assert all(mixed[i].passed == (tasks[i]["mistaken_answer"] == tasks[i]["answer"]) for i in mistaken)
    for i in mistaken:  # the tool's real answer, copied into the box
        assert mixed[i].messages[-2]["content"].split("\n")[0] == tasks[i]["mistaken_answer"]
        assert mixed[i].messages[-1]["content"] == f"The answer is \\boxed{{{tasks[i]['mistaken_answer']}}}."
    assert all(t.messages == u.messages for i, (t, u) in enumerate(zip(mixed, plain, strict=True))
               if i not in mistaken)  # every other draw (replies, short or full) is what it was
    assert "p_mistaken" not in AgentPretrainRecipe().key_fields()  # earlier recipes keep their cache keys


def test_short_trajectories_keep_every_reply_and_the_cache_keys_of_earlier_recipes() -> None:
    from transformers import AutoTokenizer

    from slime_openclaw.chat.template import ChatRenderer
    from slime_openclaw.envs import builtin_tasks
    from slime_openclaw.local.agents.pretrain import AgentPretrainRecipe, train_tasks, without_preamble
    from slime_openclaw.local.model.tiny_model import ensure_default_model
    from slime_openclaw.local.training.sft import encode_dialogue

    recipe = AgentPretrainRecipe(p_foreign=0.0, copies=1, max_tasks=4, short_share=1.0)
    trajectories = asyncio.run(collect(EnvSpec("toolcall"), builtin_tasks("toolcall", "train")[:4], recipe))
    assert all(m["role"] != "system" and not t.tools for t in trajectories for m in t.messages)
    full = asyncio.run(collect(EnvSpec("toolcall"), builtin_tasks("toolcall", "train")[:1],
                               AgentPretrainRecipe(p_foreign=0.0, copies=1, short_share=0.0)))[0]
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(ensure_default_model()))
    (long_ids, long_mask), (ids, mask) = (encode_dialogue(renderer, t) for t in (full, without_preamble(full)))
    trained = [i for i, m in zip(long_ids, long_mask, strict=True) if m]
    assert trained == [i for i, m in zip(ids, mask, strict=True) if m] and len(ids) < len(long_ids) // 2
    tasks = train_tasks(EnvSpec("toolcall"), AgentPretrainRecipe(task_seeds=2))
    assert len({t["id"] for t in tasks}) == len(tasks) > len(builtin_tasks("toolcall", "train"))
    assert {t["split"] for t in tasks} == {"train"}
    old = AgentPretrainRecipe(task_seeds=1, short_share=0.0).key_fields()  # knobs at version 1's values: left out
    assert "short_share" not in old and "task_seeds" not in old


def test_each_environment_prepares_with_its_own_recipe_and_terminal_keeps_its_cache_key(tmp_path: Path) -> None:
    from slime_openclaw.local.agents.pretrain import (
        AGENT_RECIPES,
        AgentPretrainRecipe,
        default_agent_policy_dir,
        recipe_for,
    )

    toolcall, terminal = EnvSpec("toolcall"), EnvSpec("terminal")
    assert recipe_for(terminal) == AgentPretrainRecipe() and recipe_for(toolcall) is AGENT_RECIPES["toolcall"]
    assert recipe_for(toolcall).steps > AgentPretrainRecipe().steps
    # terminal's recipe did not change; its key did once, with its tasks (TASKS_VERSION 2: 7f3aae0c0f2e before)
    assert default_agent_policy_dir(terminal, cache_root=tmp_path).name == "agent-terminal-3c9cfb2ea055"
    own = default_agent_policy_dir(toolcall, cache_root=tmp_path)
    assert own == default_agent_policy_dir(toolcall, recipe=recipe_for(toolcall), cache_root=tmp_path)
    assert own != default_agent_policy_dir(toolcall, recipe=AgentPretrainRecipe(), cache_root=tmp_path)
    own.mkdir()  # a prepared policy for toolcall's own recipe: found, not rebuilt
    (own / "pretrain.json").write_text(json.dumps({"recipe": recipe_for(toolcall).key_fields()}))
    assert prepare_agent_policy(toolcall, cache_root=tmp_path) == own


def test_short_first_steps_come_before_the_mix_and_count_in_steps(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    from slime_openclaw.local.agents import pretrain

    calls: list[tuple[int, float, int]] = []  # (steps, peak lr, longest example) per train_policy call

    def recording(model, examples, pad_id, recipe, seed, progress=None):  # type: ignore[no-untyped-def]
        calls.append((recipe.steps, recipe.lr, max(len(ids) for ids, _ in examples)))
        return real(model, examples, pad_id, recipe, seed, progress)

    real = pretrain.train_policy
    monkeypatch.setattr(pretrain, "train_policy", recording)
    recipe = dataclasses.replace(FAST_AGENT_RECIPE, steps=5, short_first=2, short_share=0.0, max_tasks=6)
    assert recipe.key_fields()["short_first"] == 2 and "short_first" not in FAST_AGENT_RECIPE.key_fields()
    seen: list[int] = []
    path = prepare_agent_policy(EnvSpec("toolcall"), recipe=recipe, cache_root=tmp_path, threads=1,
                                progress=lambda step, _loss: seen.append(step))
    assert seen == [0, 1, 2, 3, 4]
    (short_steps, short_lr, short_len), (mix_steps, mix_lr, full_len) = calls
    assert (short_steps, short_lr, mix_steps, mix_lr) == (2, recipe.lr, 3, recipe.adapt_lr)
    assert short_len < full_len // 2  # the first steps see no system prompt or tool schemas
    manifest = read_manifest(path)
    assert manifest is not None and manifest["recipe"]["short_first"] == 2 and manifest["trajectories"] == 6


def test_fast_policy_is_cached_with_its_manifest(fast_policy: Path) -> None:
    manifest = read_manifest(fast_policy)
    assert manifest is not None and manifest["trajectories"] == 12 and manifest["recipe"]["steps"] == 3
    again = prepare_agent_policy(EnvSpec("toolcall"), recipe=FAST_AGENT_RECIPE, cache_root=fast_policy.parent)
    assert again == fast_policy


def test_agents_eval_records_one_session_per_episode(fast_policy: Path, tmp_path: Path, capsys) -> None:
    journal, out = tmp_path / "j.sqlite", tmp_path / "eval.json"
    assert main(["agents", "eval", "--env", "toolcall", "--episodes", "3", "--model", str(fast_policy),
                 "--journal", str(journal), "--summary-json", str(out), "--max-turns", "2"]) == 0
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 3 and 0.0 <= summary["success_rate"] <= 1.0
    assert {"episodes", "success_rate", "mean_outcome", "turns_recorded"} <= set(summary)
    with SqliteJournal(journal, create=False) as store:
        sessions = {r.turn.session_id for r in store.iter_turns()}
        assert sessions == {"eval-eval-0", "eval-eval-1", "eval-eval-2"}
        assert summary["turns_recorded"] == sum(1 for _ in store.iter_turns()) >= 3
        assert all(store.get_outcome(s) is not None for s in sessions)
    assert "success rate" in capsys.readouterr().out


def test_agents_eval_draws_the_same_samples_for_the_same_seed(fast_policy: Path, tmp_path: Path) -> None:
    from slime_openclaw.envs import builtin_tasks

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in builtin_tasks("toolcall", "eval")[:3]))

    def replies(seed: int, name: str) -> dict[str, list[tuple[int, ...]]]:
        journal = tmp_path / f"{name}.sqlite"
        assert main(["agents", "eval", "--env", "toolcall", "--tasks", str(tasks), "--episodes", "3",
                     "--model", str(fast_policy),
                     "--journal", str(journal), "--max-turns", "2", "--temperature", "1.0",
                     "--seed", str(seed)]) == 0
        with SqliteJournal(journal, create=False) as store:
            by_session: dict[str, list[tuple[int, ...]]] = {}
            for r in sorted(store.iter_turns(), key=lambda r: (r.turn.session_id, r.turn.turn_index)):
                by_session.setdefault(r.turn.session_id, []).append(tuple(r.turn.response_ids))
            return by_session

    first, again, other = replies(3, "a"), replies(3, "b"), replies(4, "c")
    assert first == again and len(first) == 3
    assert first != other


def test_agents_train_runs_the_whole_loop(fast_policy: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "summary.json"
    assert main(["agents", "train", "--env", "toolcall", "--model", str(fast_policy), "--method", "combine",
                 "--rounds", "1", "--tasks-per-round", "2", "--group-size", "2", "--eval-episodes", "2",
                 "--max-turns", "2", "--lr", "1e-4", "--batch-size", "4", "--kl-coef", "0.1",
                 "--workdir", str(tmp_path / "run"), "--summary-json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert (summary["lr"], summary["batch_size"], summary["kl_coef"]) == (1e-4, 4, 0.1)
    for key in ("success_before", "success_after", "episodes", "train_steps", "requests_failed", "samples_lost"):
        assert key in summary
    assert summary["episodes"] == 4 and summary["requests_failed"] == 0 and summary["samples_lost"] == 0
    assert (tmp_path / "run" / "curve.png").stat().st_size > 0
    with SqliteJournal(tmp_path / "run" / "journal.sqlite", create=False) as store:
        states = {r.state for r in store.iter_turns()}
        assert states <= {TurnState.CONSUMED, TurnState.DISCARDED, TurnState.READY}
        assert len({r.turn.session_id for r in store.iter_turns()}) == 4  # eval episodes are not recorded
    assert "success rate" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["agents", "train", "--env", "no.such.Env"]) == 2
    assert main(["agents", "train", "--env", "toolcall", "--rounds", "0"]) == 2
    for flag, value in (("--lr", "0"), ("--lr", "nan"), ("--batch-size", "0"), ("--kl-coef", "-1")):
        assert main(["agents", "train", "--env", "toolcall", flag, value]) == 2
    bad = tmp_path / "tasks.jsonl"
    bad.write_text("not json\n")
    assert main(["agents", "eval", "--env", "toolcall", "--tasks", str(bad), "--episodes", "1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 7 and all(line.startswith("slime-openclaw agents: ") for line in errors)


def test_prompt_data_writes_the_rows_the_recipes_read(tmp_path: Path, capsys) -> None:
    from slime_openclaw.envs import builtin_tasks
    from slime_openclaw.slime.agent_generate import task_of
    from slime_openclaw.slime.recipe import load_recipe

    out = tmp_path / "toolcall-train.jsonl"
    assert main(["agents", "prompt-data", "--env", "toolcall", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tasks = builtin_tasks("toolcall", "train")
    recipe = load_recipe("toolcall")["slime"]
    assert len(rows) == len(tasks)
    for row, task in zip(rows, tasks, strict=True):
        assert set(row) == {recipe["input-key"], recipe["metadata-key"]}
        assert row["prompt"] == task["question"] and row["metadata"] == task
        sample = type("Sample", (), {"metadata": row[recipe["metadata-key"]]})()
        assert task_of(sample) == task
    evals = tmp_path / "terminal-eval.jsonl"
    assert main(["agents", "prompt-data", "--env", "terminal", "--split", "eval", "-o", str(evals)]) == 0
    eval_ids = {json.loads(line)["metadata"]["id"] for line in evals.read_text().splitlines()}
    assert eval_ids == {t["id"] for t in builtin_tasks("terminal", "eval")}
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"question": "q1", "split": "train"}\n{"instruction": "do it", "split": "eval", "n": 2}\n')
    assert main(["agents", "prompt-data", "--env", "toolcall", "--tasks", str(mine), "--split", "eval",
                 "-o", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"prompt": "do it", "metadata": {"instruction": "do it", "split": "eval", "n": 2}}]
    capsys.readouterr()
    assert main(["agents", "prompt-data", "--env", "toolcall", "-o", str(tmp_path / "data.json")]) == 2
    assert main(["agents", "prompt-data", "--env", "toolcall", "-o", str(tmp_path / "no" / "d.jsonl")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "slime reads --prompt-data only from .jsonl" in errors[0]
