"""Import slime's argument parser on a CPU machine (used by the `slime`-marked parse tests).

slime's ``parse_args`` imports sglang's ``ServerArgs``, and sglang imports torchvision at
module level (``decode_jpeg``, ``transforms``) and registers image processors that need
transformers to see torchvision. PyPI's torchvision wheels link CUDA torch and cannot load
next to CPU torch, so the parse environment (tools/slime_env.sh) has none: this module
puts an inert stand-in for the ``torchvision`` package in place while slime's parser module
imports. Nothing of it runs: the parser never decodes an image.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

TORCHVISION_VERSION = "0.26.0"  # the torchvision of torch 2.11, sglang 0.5.15.post1's pin


class _Inert(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return cls


class Inert(metaclass=_Inert):
    """Any torchvision name: a class whose attributes, calls and instances are itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return self


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Inert


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []
        module.__version__ = TORCHVISION_VERSION  # type: ignore[attr-defined]


def install_torchvision_stand_in() -> bool:
    """Put the stand-in on the import path unless a real torchvision is there; True if installed.
    Must run before transformers first asks whether torchvision is available (conftest does)."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return True
    try:
        if importlib.util.find_spec("torchvision") is not None:
            return False
    except (ImportError, ValueError):
        pass
    sys.meta_path.insert(0, _Finder())
    return True


def import_slime_arguments() -> types.ModuleType:
    """``slime.utils.arguments``, imported with the torchvision stand-in on the path."""
    if "slime.utils.arguments" in sys.modules:
        return sys.modules["slime.utils.arguments"]
    install_torchvision_stand_in()
    from transformers.utils import import_utils

    import_utils.is_torchvision_available.cache_clear()
    import slime.utils.arguments as arguments

    return arguments
