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
