"""Shared test setup: tests marked `slime` run only when upstream slime is importable; the
agents' slime runtime a test started is closed after it (``cleanup_runtime``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest


def _slime_importable() -> bool:
    try:
        return importlib.util.find_spec("slime.utils.types") is not None
    except (ImportError, ValueError):
        return False


def pytest_configure(config: pytest.Config) -> None:
    if _slime_importable():  # before any test module imports transformers (slime_parse_env.py says why)
        from slime_parse_env import install_torchvision_stand_in

        install_torchvision_stand_in()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _slime_importable():
        return
    skip = pytest.mark.skip(reason="upstream slime not importable here (CI cannot fetch it): `make test-slime` builds it from SLIME_SRC/MEGATRON_SRC")
    for item in items:
        if item.get_closest_marker("slime") is not None:  # not `keywords`: a folder named slime is one
            item.add_marker(skip)


@pytest.fixture
def cleanup_runtime() -> Iterator[None]:
    """Close the runtime (journal, record-only gateway) the agents' generate function started, if any."""
    yield
    from slime_openclaw.slime import agent_generate

    live = agent_generate._RUNTIME
    agent_generate._RUNTIME = None
    if live is not None:
        live.live.close()
        live.journal.close()
