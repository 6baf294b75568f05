"""The user's data and cache directories for slime-openclaw, by the XDG base directory rules.

Every default location (the journal, the demo's work directories, the benchmarks' output,
the tiny-model cache) is built from these two functions, so the rule is written once:
``$XDG_DATA_HOME`` (``$XDG_CACHE_HOME``) when it is set to an absolute path, else
``$HOME/.local/share`` (``$HOME/.cache``). A relative value is invalid under the
specification and ignored. Both end in the ``slime-openclaw`` folder; neither creates it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP = "slime-openclaw"


def _base(env_key: str, fallback: str, environ: Mapping[str, str] | None) -> Path:
    env = os.environ if environ is None else environ
    value = env.get(env_key, "")
    if value and os.path.isabs(value):
        return Path(value) / APP
    home = env.get("HOME") or str(Path.home())
    return Path(home) / fallback / APP


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/slime-openclaw`` (else ``~/.local/share/slime-openclaw``).

    ``environ`` defaults to the process environment; pass one explicitly from config code.
    """
    return _base("XDG_DATA_HOME", os.path.join(".local", "share"), environ)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/slime-openclaw`` (else ``~/.cache/slime-openclaw``)."""
    return _base("XDG_CACHE_HOME", ".cache", environ)
