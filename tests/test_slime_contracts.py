"""slime's own ``tests/plugin_contracts`` against every path the plugin gives slime.

Marked ``slime`` (the shared slime environment). Each contract that a live-traffic plugin
can meet is run as slime wrote it and passes; for the others the test pins the exact point
where it stops and why (README, "slime's plugin contracts"), so a change on either side
shows here. The custom reward contracts (single and ``--group-rm``) run in
tests/test_slime_upstream.py.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from slime_openclaw.errors import ConfigError
from slime_openclaw.slime.recipe import DATA_SOURCE, ROLLOUT_FUNCTION

pytestmark = pytest.mark.slime

POSTPROCESS = "slime_openclaw.slime.hooks.topk_postprocess"
GENERATE = "slime_openclaw.slime.agent_generate.generate"


@pytest.fixture(scope="module")
def contracts():
    """slime's contract modules (path loading, rollout, runtime hooks, generate)."""
    import transformers  # noqa: F401  (the real one, before slime's contract stubs look for it)

    spec = importlib.util.find_spec("slime")
    assert spec is not None and spec.submodule_search_locations
    tests_dir = str(Path(next(iter(spec.submodule_search_locations))).parent / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from plugin_contracts import test_plugin_generate_contracts as generate
    from plugin_contracts import test_plugin_path_loading_contracts as path_loading
    from plugin_contracts import test_plugin_rollout_contracts as rollout
    from plugin_contracts import test_plugin_runtime_hook_contracts as hooks

    return {"path_loading": path_loading, "rollout": rollout, "hooks": hooks, "generate": generate}


def test_data_source_contract_passes(contracts) -> None:
    contracts["path_loading"].check_data_source_path(DATA_SOURCE)


def test_postprocess_signature_is_slimes_exactly(contracts) -> None:
    hooks = contracts["hooks"]
    (case,) = [c for c in hooks.HOOK_CASES if c.name == "rollout_data_postprocess"]
    fn = hooks.load_function(POSTPROCESS)
    assert tuple(inspect.signature(fn).parameters) == case.expected_params
    # The invocation half asserts a flag only slime's reference hook sets; ours returns None as required.
    with pytest.raises(AttributeError, match="rollout_data_postprocess_called"):
        case.invoke(fn)


def test_rollout_and_eval_contracts_stop_at_args_none(contracts, monkeypatch) -> None:
    rollout, path_loading = contracts["rollout"], contracts["path_loading"]
    fn = rollout.load_function(ROLLOUT_FUNCTION)
    rollout.assert_rollout_function_signature_matches_default(fn)
    monkeypatch.setenv("SLIME_CONTRACT_ROLLOUT_FUNCTION_PATH", ROLLOUT_FUNCTION)
    with pytest.raises(ConfigError, match="args=None"):
        rollout.test_rollout_function_path_contract_supports_user_override()
    with pytest.raises(ConfigError, match="args=None"):
        path_loading.check_eval_function_path(ROLLOUT_FUNCTION)


def test_generate_contract_signature_passes_and_the_call_needs_a_router(contracts, monkeypatch) -> None:
    generate = contracts["generate"]
    generate.assert_custom_generate_signature_matches_expected(generate.load_function(GENERATE))
    from slime.rollout import sglang_rollout

    monkeypatch.setattr(sglang_rollout, "GenerateState", generate._PatchedGenerateState)
    monkeypatch.setenv("SLIME_CONTRACT_CUSTOM_GENERATE_FUNCTION_PATH", GENERATE)
    # The call runs an agent episode against the policy: the contract's bare arguments name no engine.
    with pytest.raises(ConfigError, match="SGLang router address is not known"):
        generate.test_custom_generate_function_path_supports_user_override(None)
