"""Which command-line flags slime consumes, and the check ``launch`` runs on a recipe's flags.

slime parses with ``parse_known_args``: a misspelled flag is dropped without a word. So
``launch`` checks every ``slime.*`` key itself. With slime importable, the reference is
slime's own parsers: ``option_strings()`` records the option strings of every parser that
slime's ``parse_args`` runs (its pre-parser, the sglang parser and Megatron's parser with
slime's arguments), exactly the flags one of them would consume. Without slime, the
reference is ``RELIED_ON``, the flags our recipes and launch use; a key close to one of
those but not equal is then an error (a typo), anything else is passed on unchecked.

``python -m slime_openclaw.slime.flags`` prints slime's option strings as JSON (launch
runs it with the job's ``PYTHONPATH`` when slime is not importable in its own process).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from slime_openclaw.errors import ConfigError

# Flags the recipes and launch emit (checked against slime's parsers by tests/test_slime_parse.py).
RELIED_ON = frozenset({
    "--hf-checkpoint", "--load", "--ref-load", "--save", "--save-interval", "--actor-num-nodes",
    "--actor-num-gpus-per-node", "--rollout-num-gpus", "--rollout-num-gpus-per-engine", "--rollout-function-path",
    "--custom-rm-path", "--custom-config-path", "--sglang-config", "--advantage-estimator",
    "--disable-rewards-normalization", "--custom-advantage-function-path", "--loss-type",
    "--custom-loss-function-path", "--rollout-data-postprocess-path", "--tensor-model-parallel-size",
    "--context-parallel-size", "--eps-clip", "--eps-clip-high", "--use-kl-loss", "--kl-loss-coef", "--kl-loss-type",
    "--rollout-batch-size", "--global-batch-size", "--n-samples-per-prompt", "--num-rollout",
    "--disable-rollout-global-dataset", "--rollout-temperature", "--rollout-max-response-len",
    "--rollout-max-context-len", "--lr", "--update-weights-interval", "--use-opd", "--opd-type", "--opd-kl-coef",
    "--use-tis", "--tis-clip", "--tis-clip-low", "--micro-batch-size", "--normalize-advantages",
    "--calculate-per-token-loss", "--use-rollout-logprobs", "--entropy-coef", "--group-rm", "--reward-key",
    "--custom-generate-function-path", "--custom-reward-post-process-path", "--prompt-data", "--input-key",
    "--metadata-key", "--data-source-path", "--router-policy",
    "--custom-rollout-log-function-path",
})
STATIC_CUTOFF = 0.85
"""How close to a relied-on flag an unknown key must be to count as its typo (difflib ratio)."""


@contextlib.contextmanager
def recording_parsers() -> Iterator[set[str]]:
    """Within the block, every ``ArgumentParser`` that parses adds its option strings to the set."""
    seen: set[str] = set()
    original = argparse.ArgumentParser.parse_known_args

    def recording(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        seen.update(s for s in self._option_string_actions if s.startswith("--"))
        return original(self, args, namespace)

    argparse.ArgumentParser.parse_known_args = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]


def option_strings() -> set[str]:
    """The ``--`` option strings of every parser slime's ``parse_args`` runs (needs slime)."""
    from slime.utils.arguments import parse_args

    saved = sys.argv
    sys.argv = ["train_async.py"]
    try:
        # An empty command fails slime's validation after all parsers ran; only the parsers matter here.
        with recording_parsers() as seen, contextlib.suppress(Exception, SystemExit):
            parse_args()
    finally:
        sys.argv = saved
    if not seen:
        raise ConfigError("slime's parse_args ran no parser: cannot read its flags")
    return seen


def check_flags(names: Iterable[str], known: Iterable[str], *, exhaustive: bool) -> None:
    """Raise a one-line ``ConfigError`` for the first ``slime.NAME`` slime would drop.

    ``exhaustive``: ``known`` is everything slime consumes (its parsers), so any other flag
    is an error. Otherwise ``known`` is ``RELIED_ON`` and only near misses are errors.
    """
    reference = sorted(set(known))
    for name in names:
        flag = name if name.startswith("--") else f"--{name}"
        if flag in reference:
            continue
        cutoff = 0.6 if exhaustive else STATIC_CUTOFF
        close = difflib.get_close_matches(flag, reference, n=1, cutoff=cutoff)
        hint = f" (did you mean slime.{close[0][2:]}?)" if close else ""
        if exhaustive:
            raise ConfigError(f"slime.{flag[2:]}: slime has no flag {flag}; slime would ignore it{hint}")
        if close:
            raise ConfigError(f"slime.{flag[2:]}: not a flag launch knows{hint}")


def main() -> int:
    """Print slime's option strings as a JSON list (exit 1 with the reason when slime is unusable)."""
    try:
        flags = option_strings()
    except (ImportError, ConfigError) as exc:
        print(f"slime's parser is not importable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(sorted(flags)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
