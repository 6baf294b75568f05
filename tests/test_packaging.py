"""setup.py's dependency bounds: what is tested is admitted, the cluster extras match slime's pins."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def setup_requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    """``install_requires`` and ``extras_require`` as written in setup.py (literals, no import)."""
    call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in keywords["extras_require"].items()}
    return [Requirement(r) for r in keywords["install_requires"]], extras


@pytest.mark.parametrize("name", ["torch", "transformers", "tokenizers"])
def test_the_model_stack_is_bounded_and_admits_what_runs_here(name) -> None:
    base, _ = setup_requirements()
    req = next(r for r in base if r.name == name)
    assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"
    installed = importlib.metadata.version(name)
    assert req.specifier.contains(installed, prereleases=True), f"installed {name} {installed} outside {req}"


def test_the_base_admits_slimes_sglang_stack() -> None:
    """A GPU install puts sglang 0.5.15.post1 next to us: its torch and transformers pins must fit."""
    base, _ = setup_requirements()
    pins = {"torch": "2.11.0", "transformers": "5.12.1", "tokenizers": "0.22.2"}  # sglang 0.5.15.post1's METADATA
    for req in base:
        if req.name in pins:
            assert req.specifier.contains(pins[req.name]), f"{req} refuses sglang's {req.name}=={pins[req.name]}"


def test_gpu_extras_are_slimes_pins_and_not_pypi_megatron() -> None:
    _, extras = setup_requirements()
    gpu = {r.name.replace("_", "-"): r for r in extras["gpu"]}
    assert "megatron-core" not in gpu  # slime runs Megatron-LM at a commit with its own patches
    assert all(str(r.specifier).startswith("==") for r in gpu.values()), gpu
    sglang = re.search(r"^SGLANG=sglang==(\S+)$", (ROOT / "tools" / "slime_env.sh").read_text(), re.M)
    assert sglang is not None and str(gpu["sglang"].specifier) == f"=={sglang.group(1)}"
