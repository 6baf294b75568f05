"""Proof against the real slime: Samples, plugin contracts, and our loss through slime's loss entry.

Marked ``slime``: skipped unless upstream slime is importable; ``make test-slime`` runs them
in the environment tools/slime_env.sh builds (slime 624b824a, the Megatron-LM commit slime
pins with its patches, sglang 0.5.15.post1). slime's own contract checks are imported from its ``tests/plugin_contracts``
(they stub ``ray``/``sglang_router`` as slime's contract suite does).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slime


def _contracts_dir() -> Path:
    spec = importlib.util.find_spec("slime")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).parent / "tests"


@pytest.fixture(scope="module")
def contracts():
    """slime's tests/plugin_contracts modules (rollout and path-loading/custom-rm)."""
    import transformers  # noqa: F401  (the real one, before slime's contract stubs look for it)

    tests_dir = str(_contracts_dir())
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from plugin_contracts import test_plugin_path_loading_contracts as path_loading
    from plugin_contracts import test_plugin_rollout_contracts as rollout

    return rollout, path_loading


def test_rollout_function_signature_equals_slimes_default(contracts) -> None:
    rollout, _ = contracts
    from slime.utils.misc import load_function

    fn = load_function("slime_openclaw.slime.rollout.generate_rollout")
    rollout.assert_rollout_function_signature_matches_default(fn)


def test_custom_rm_contract_single_and_group(contracts, monkeypatch) -> None:
    _, path_loading = contracts
    monkeypatch.setenv("SLIME_CONTRACT_CUSTOM_RM_PATH", "slime_openclaw.slime.reward.reward")
    path_loading.test_custom_rm_path_aligns_with_expected_format()
    monkeypatch.setenv("SLIME_CONTRACT_CUSTOM_RM_PATH", "slime_openclaw.slime.reward.group_reward")
    monkeypatch.setenv("SLIME_CONTRACT_GROUP_RM", "1")
    path_loading.test_custom_rm_path_aligns_with_expected_format()
    # slime's batched path hands our single-sample hook a list when a generate returns one
    from slime.utils.types import Sample

    fn = path_loading.load_function("slime_openclaw.slime.reward.reward")
    assert asyncio.run(fn(None, [Sample(reward=0.5), Sample()])) == [0.5, 0.0]


def test_rollout_function_with_real_samples_and_args(tmp_path, contracts) -> None:
    from test_slime_glue import add_ready, config_args

    from slime_openclaw.journal.sqlite import SqliteJournal

    journal_path = tmp_path / "journal.sqlite"
    with SqliteJournal(journal_path) as journal:
        # turns of this job: recorded after the runtime starts (earlier ones are an earlier job's)
        later = time.time() + 3600
        add_ready(journal, "a", reward_value=1.0, teacher=True, created_at=later)
        add_ready(journal, "b-long", reward_value=-1.0, teacher=False, created_at=later)
    args = config_args(tmp_path)
    args.rollout_batch_size, args.n_samples_per_prompt = 2, 1
    # What slime sets up before calling us: its SGLang router (here the embedded engine,
    # which speaks the same protocol), the frozen judge's router, and the checkpoint dir.
    from helpers_model import tiny_model_dir

    from slime_openclaw.engine.runtime import Runtime
    from slime_openclaw.engine.server import ServerThread

    model = tiny_model_dir()
    with Runtime.load(model) as engine, ServerThread(engine) as engine_url:
        host, port = engine_url.removeprefix("http://").rsplit(":", 1)
        args.hf_checkpoint = str(model)
        args.sglang_router_ip, args.sglang_router_port = host, int(port)
        args.sglang_model_routers = {"judge": (host, int(port))}
        _drain_through_slime(args, contracts)


def _drain_through_slime(args, contracts) -> None:
    from slime.rollout.base_types import RolloutFnEvalOutput, RolloutFnTrainOutput, call_rollout_fn
    from slime.utils.types import Sample

    from slime_openclaw.slime import rollout

    try:
        out = call_rollout_fn(rollout.generate_rollout, args, 0, None, evaluation=False)
        assert isinstance(out, RolloutFnTrainOutput)
        samples = [group[0] for group in out.samples]
        for sample in samples:
            rollout_contract_checks(contracts[0], sample, Sample)
        assert samples[1].status is Sample.Status.TRUNCATED
        assert samples[1].teacher_log_probs == samples[1].rollout_log_probs
        assert out.metrics["openclaw/samples"] == 2.0
        evaluation = call_rollout_fn(rollout.generate_rollout, args, 0, None, evaluation=True)
        assert isinstance(evaluation, RolloutFnEvalOutput)
        contracts[0].assert_eval_rollout_contract(evaluation)
    finally:
        rollout.shutdown()


def rollout_contract_checks(rollout_contracts, sample, sample_cls) -> None:
    rollout_contracts.assert_sample_contract(sample)
    assert isinstance(sample, sample_cls)
    assert len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
    assert sample.tokens[-sample.response_length :] == [20, 21, 22]
    restored = sample_cls.from_dict(sample.to_dict())  # slime's debug dump round trip
    assert restored.tokens == sample.tokens and restored.status == sample.status


@pytest.fixture(scope="module")
def megatron_cpu():
    """torch.distributed (gloo, world size 1) and Megatron's parallel state, on CPU."""
    pytest.importorskip("megatron.core")
    import torch.distributed as dist
    from megatron.core import parallel_state

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        parallel_state.initialize_model_parallel()
        yield
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()


def slime_loss_args(tmp_path) -> argparse.Namespace:
    from test_slime_glue import config_args

    args = config_args(tmp_path, openclaw_tis_clip=0.0)
    for key, value in {
        "loss_type": "custom_loss", "custom_loss_function_path": "slime_openclaw.slime.hooks.policy_loss",
        "calculate_per_token_loss": False, "recompute_loss_function": False, "allgather_cp": False,
        "log_probs_chunk_size": -1, "rollout_top_p": 1.0, "use_rollout_logprobs": False, "entropy_coef": 0.0,
        "use_kl_loss": False,
    }.items():
        setattr(args, key, value)
    return args


def test_custom_loss_through_slimes_loss_entry_on_cpu(tmp_path, megatron_cpu) -> None:
    from slime.backends.megatron_utils.loss import get_log_probs_and_entropy, loss_function

    from slime_openclaw.slime.logprobs import SlimeBackend, TorchBackend

    args = slime_loss_args(tmp_path)
    torch.manual_seed(0)
    tokens = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7, 8])]
    logits = torch.randn(1, 8, 16, requires_grad=True)
    batch = {
        "unconcat_tokens": tokens, "total_lengths": [5, 3], "response_lengths": [3, 2],
        "loss_masks": [torch.tensor([1, 1, 0]), torch.tensor([1, 1])], "rollout_mask_sums": torch.tensor([2.0, 2.0]),
        "advantages": [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.5])],
        "rollout_log_probs": [torch.full((3,), -1.0), torch.full((2,), -1.0)],
    }
    with torch.no_grad():
        _, ref = get_log_probs_and_entropy(logits, args=args, unconcat_tokens=tokens, total_lengths=[5, 3],
                                           response_lengths=[3, 2])
        ours = TorchBackend().log_probs(logits, args, batch)
    for a, b in zip(ref["log_probs"], ours, strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # our single-device extraction equals slime's
    batch["log_probs"] = [lp - 0.1 for lp in ours]
    loss, normalizer, log = loss_function(args, batch, 1, 2, logits)
    assert set(log["keys"]) >= {"loss", "pg_loss", "pg_clipfrac", "ppo_kl"}
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert isinstance(SlimeBackend().log_probs(logits.detach(), args, batch)[0], torch.Tensor)


@pytest.fixture
def cp_state(monkeypatch, megatron_cpu):
    """Megatron's mpu reporting context-parallel rank ``state["rank"]`` of ``state["size"]``: one
    process plays each CP rank in turn (slime's CP helpers read only these; DP is 1)."""
    from megatron.core import mpu

    state = {"rank": 0, "size": 1}
    monkeypatch.setattr(mpu, "get_context_parallel_rank", lambda: state["rank"])
    monkeypatch.setattr(mpu, "get_context_parallel_world_size", lambda: state["size"])
    monkeypatch.setattr(mpu, "get_data_parallel_world_size",
                        lambda with_context_parallel=False, **_: state["size"] if with_context_parallel else 1)
    return state


def test_zigzag_fake_equals_slimes_cp_slicing(cp_state) -> None:
    from cp_fakes import zigzag_local
    from slime.backends.megatron_utils.cp_utils import slice_log_prob_with_cp

    for size in (2, 3):
        for total in range(2, 20):
            for response in range(1, total):
                values = torch.arange(float(response))
                for rank in range(size):
                    cp_state.update(rank=rank, size=size)
                    ours = zigzag_local(values, total, response, rank, size)
                    assert torch.equal(slice_log_prob_with_cp(values, total, response), ours), (total, response, rank)


def _cp_step(args, batch, logits, cp_state, size: int) -> tuple[dict[str, float], torch.Tensor]:
    """slime's loss entry on every CP rank (its own slicing of logits and per-token data), then its
    step reduction; returns the reduced metrics and sum over ranks of d(loss)/d(logits) / size."""
    from slime.backends.megatron_utils.cp_utils import slice_log_prob_with_cp, slice_with_cp
    from slime.backends.megatron_utils.loss import loss_function
    from slime.observability.train_metric_utils import reduce_train_step_metrics

    n = len(batch["total_lengths"])
    logs, grad = [], torch.zeros_like(logits)
    offsets = [0, *torch.tensor(batch["total_lengths"]).cumsum(0).tolist()]
    for rank in range(size):
        cp_state.update(rank=rank, size=size)
        leaf = logits.detach().clone().requires_grad_()
        local_logits = torch.cat([slice_with_cp(leaf[0, lo:hi], 0.0) for lo, hi in zip(offsets, offsets[1:], strict=False)])
        local = dict(batch)
        for key in ("advantages", "log_probs", "rollout_log_probs"):
            local[key] = [slice_log_prob_with_cp(x, t, r) for x, t, r in
                          zip(batch[key], batch["total_lengths"], batch["response_lengths"], strict=True)]
        loss, _, log = loss_function(args, local, 1, n, local_logits.unsqueeze(0))
        loss.backward()
        grad += leaf.grad / size  # Megatron averages gradients over the DP x CP group
        logs.append(log)
    reduced = reduce_train_step_metrics(logs, calculate_per_token_loss=args.calculate_per_token_loss,
                                        step_global_batch_size=n, cp_size=size, dp_with_cp_group=None)
    return reduced, grad


@pytest.mark.parametrize("per_token", [False, True])
def test_loss_hook_at_cp2_through_slimes_loss_entry_equals_cp1(tmp_path, cp_state, per_token) -> None:
    """CP=2 with the default tis_clip 2.0 (issue 13: "loss mask (7,) does not match (2,)"): losses,
    gradients and slime-reduced metrics equal the CP=1 run's, and equal slime's built-in policy loss
    with --use-tis (same PPO clip, same truncated importance weight, same metric reduction)."""
    from test_slime_cp import make_batch

    args = slime_loss_args(tmp_path)
    args.openclaw_tis_clip = 2.0
    args.calculate_per_token_loss = per_token
    batch, logits = make_batch(shapes=[(2, 10), (4, 5), (3, 4), (5, 2)])
    batch["rollout_mask_sums"] = torch.tensor([float(m.sum()) for m in batch["loss_masks"]])
    one, grad_one = _cp_step(args, batch, logits, cp_state, 1)
    two, grad_two = _cp_step(args, batch, logits, cp_state, 2)
    assert 0 < one["tis_clipfrac"] < 1 and 0 < one["pg_clipfrac"] < 1
    for key in ("loss", "pg_loss", "pg_clipfrac", "ppo_kl", "tis", "tis_clipfrac", "tis_abs"):
        assert two[key] == pytest.approx(one[key], abs=1e-5), key
    assert torch.allclose(grad_two, grad_one, atol=1e-6)
    builtin = argparse.Namespace(**vars(args))
    for key, value in {"loss_type": "policy_loss", "use_tis": True, "tis_clip": 2.0, "tis_clip_low": 0.0,
                       "advantage_estimator": "grpo", "use_opsm": False, "eps_clip_c": None,
                       "get_mismatch_metrics": False, "custom_tis_function_path": None, "use_unbiased_kl": False,
                       "custom_pg_loss_reducer_function_path": None}.items():
        setattr(builtin, key, value)
    theirs, grad_theirs = _cp_step(builtin, batch, logits, cp_state, 2)
    for key in ("pg_loss", "pg_clipfrac", "ppo_kl", "tis", "tis_clipfrac", "tis_abs"):
        assert two[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert torch.allclose(grad_two, grad_theirs, atol=1e-6)
