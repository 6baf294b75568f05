"""The signal pipeline of general agents: the personal agents' judges, hints and teacher, plus
the rule that turns a failed tool answer into a hint.

``agent_pipeline(base, method)`` takes the pipeline ``live.build_signal_pipeline`` builds
from the run's config (rule judges and/or the LLM PRM with its votes, tokenizer and
timeouts; hint extractors; the teacher engine) and puts ``ToolErrorHintExtractor`` in
front of its hint extractors, so an environment's error message feeds hindsight OPD.
"""

from __future__ import annotations

from slime_openclaw.agents.stage import sample_method
from slime_openclaw.signals.hints import FirstHint, HintExtractor, ToolErrorHintExtractor
from slime_openclaw.signals.pipeline import SignalPipeline


def agent_pipeline(base: SignalPipeline, method: str) -> SignalPipeline | None:
    """The pipeline for agent ``method``: None for ``outcome`` (no judge, no hints)."""
    if method == "outcome":
        return None
    hints: HintExtractor | None = None
    if method == "combine":
        rule = ToolErrorHintExtractor()
        hints = FirstHint([rule, base.hints]) if base.hints is not None else rule
    return SignalPipeline(sample_method(method), base.judge, hints, base.teacher if method == "combine" else None,
                          base.section_chars)
