"""The XDG base-directory rule, once: every default location follows it, relative values included."""

from __future__ import annotations

from pathlib import Path

import pytest

from slime_openclaw.journal.location import default_journal_path
from slime_openclaw.local.demo.command import default_workdir
from slime_openclaw.local.model.tiny_model import default_cache_root
from slime_openclaw.paths import cache_dir, data_dir


def test_absolute_values_are_used_and_relative_or_empty_ones_fall_back_to_home() -> None:
    assert data_dir({"XDG_DATA_HOME": "/data", "HOME": "/h"}) == Path("/data/slime-openclaw")
    assert cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/slime-openclaw")
    for value in ("", "relative/dir"):
        assert data_dir({"XDG_DATA_HOME": value, "HOME": "/h"}) == Path("/h/.local/share/slime-openclaw")
        assert cache_dir({"XDG_CACHE_HOME": value, "HOME": "/h"}) == Path("/h/.cache/slime-openclaw")


@pytest.mark.parametrize("xdg", ["absolute", "relative"])
def test_every_default_location_follows_the_one_rule(xdg: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    value = str(tmp_path / "xdg") if xdg == "absolute" else "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", value)
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    data, cache = data_dir(), cache_dir()
    expected_base = tmp_path / "xdg" if xdg == "absolute" else tmp_path / "home"
    assert data.is_relative_to(expected_base) and cache.is_relative_to(expected_base)
    assert default_journal_path() == data / "journal.sqlite"
    assert default_workdir("binary_rl", 3) == data / "demo" / "binary_rl-seed3"
    assert default_cache_root() == cache / "models"
