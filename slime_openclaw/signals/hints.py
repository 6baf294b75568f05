"""Directive signal: hints saying how the response should have been different.

- ``LLMHintExtractor``: m concurrent votes of a model asked whether the next state reveals
  how the response should have changed; a vote answers ``\\boxed{1}`` with a short hint
  between ``[HINT]`` and ``[/HINT]``, or ``\\boxed{-1}``. ``select_best_hint`` keeps one.
- ``CorrectionHintExtractor``: rule-based; an explicit user correction ("no, I meant ...",
  "actually ...", "please don't ...") becomes the hint, quoted.
- ``ToolErrorHintExtractor``: rule-based; a tool or environment answer that failed (a
  traceback, a non-zero exit code, an error result) becomes the hint, quoting its error line.
- ``FirstHint``: extractors in order, the first accepted hint wins.

Selection rule (``select_best_hint``), documented in the README:
1. candidates are the hint texts of votes that answered +1, whitespace-collapsed;
2. a candidate longer than ``max_chars`` (default 600) is cut at the last word boundary
   within the limit (the teacher context stays bounded); then a candidate shorter than
   ``min_chars`` (default 11, i.e. "over 10 characters") is trivial and dropped;
3. the hint is accepted only if at least ``min_positive`` votes (default 1) answered +1;
4. among the remaining candidates the longest wins (more concrete detail); equal lengths go
   to the earliest vote, so the choice is deterministic.
Otherwise the turn has no accepted hint and yields no OPD signal.
The teacher query that uses the hint is in teacher.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from slime_openclaw.signals.context import JudgeInput, content_text
from slime_openclaw.signals.judge import JudgeUnavailable, parse_score, run_votes
from slime_openclaw.signals.judge_backends import RetryPolicy, TextGenerator
from slime_openclaw.types import Hint, Message

HINT_OPEN, HINT_CLOSE = "[HINT]", "[/HINT]"
_HINT_SPAN = re.compile(re.escape(HINT_OPEN) + r"(.*?)" + re.escape(HINT_CLOSE), re.DOTALL)


class HintExtractor(Protocol):
    """(task, response, next state) -> hint, or None to abstain."""

    name: str

    async def extract(self, item: JudgeInput) -> Hint | None:
        """A hint (accepted or not), or None when this extractor has nothing to say."""
        ...


@dataclass(frozen=True)
class HintSelection:
    """Parameters of ``select_best_hint``."""

    min_chars: int = 11
    """Shortest hint accepted, in characters after whitespace collapsing."""
    max_chars: int = 600
    """Longer hints are cut to this length at a word boundary."""
    min_positive: int = 1
    """+1 votes needed before any hint is accepted."""


def normalize_hint(text: str) -> str:
    """Collapse whitespace runs to single spaces and strip."""
    return " ".join(text.split())


def cut_hint(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last space when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip()


def select_best_hint(votes: Sequence[int | None], texts: Sequence[str], rule: HintSelection | None = None) -> str:
    """The accepted hint text under the module's selection rule, or "" when none qualifies.

    ``votes[i]`` is vote i's answer (+1, -1 or None) and ``texts[i]`` its hint text.
    """
    rule = rule or HintSelection()
    if sum(1 for v in votes if v == 1) < rule.min_positive:
        return ""
    best = ""
    for vote, text in zip(votes, texts, strict=True):
        candidate = cut_hint(normalize_hint(text), rule.max_chars)
        if vote != 1 or len(candidate) < rule.min_chars:
            continue
        if len(candidate) > len(best):
            best = candidate
    return best


def parse_hint_answer(text: str) -> tuple[int | None, str]:
    """(vote, hint text) of one answer: +1 with the last ``[HINT]...[/HINT]`` span, or -1 and ""."""
    score = parse_score(text)
    if score not in (1, -1):
        return None, ""
    if score == -1:
        return -1, ""
    spans = _HINT_SPAN.findall(text)
    return 1, (spans[-1].strip() if spans else "")


_HINT_SYSTEM = (
    "You look at one step of an AI assistant's work together with what happened right after it, "
    "and you extract hindsight: what the assistant should have known or done differently."
)

_HINT_INSTRUCTIONS = f"""\
Read the TASK, the ASSISTANT RESPONSE and the NEXT STATE (what the user, a tool or the \
environment produced right after the response; its role: {{roles}}). Does the next state \
reveal how the response should have been different? For example: the user corrects it or \
states a preference, asks for another format or style, adds a requirement that was missing, \
or a tool reports an error that the response caused.

If it does: write a hint of one to three sentences, addressed to the assistant, that would \
have produced a better response had it been known beforehand. Make it concrete and direct \
("Answer in Celsius, not Fahrenheit."); do not copy the whole next state and do not say that \
it comes from later. Put the hint between {HINT_OPEN} and {HINT_CLOSE}, then end with \\boxed{{{{1}}}}.
If it does not (the response was fine, or the next state is unrelated), give no hint and end \
with \\boxed{{{{-1}}}}."""


def build_hint_messages(item: JudgeInput) -> list[Message]:
    """The hint extractor's chat messages for one turn (our own prompt)."""
    return item.prompt_messages(_HINT_SYSTEM, _HINT_INSTRUCTIONS.format(roles=item.next_roles))


class LLMHintExtractor:
    """m concurrent hint votes of a model; ``select_best_hint`` picks the hint."""

    def __init__(
        self,
        generator: TextGenerator,
        votes: int = 3,
        policy: RetryPolicy | None = None,
        selection: HintSelection | None = None,
    ) -> None:
        if votes < 1:
            raise ValueError("a hint extractor needs at least one vote")
        self.generator = generator
        self.votes = votes
        self.policy = policy or RetryPolicy()
        self.selection = selection or HintSelection()
        self.name = f"llm:{generator.name}"

    async def extract(self, item: JudgeInput) -> Hint:
        """A ``Hint`` (``accepted=False`` when none qualifies).

        Raises ``JudgeUnavailable`` when no vote got any answer (the model is down): the
        caller retries the turn later instead of recording "no hint".
        """
        outcomes = await run_votes(self.generator, build_hint_messages(item), self.votes, self.policy)
        if all(o.value is None for o in outcomes):
            raise JudgeUnavailable(f"hint extractor {self.name}: {outcomes[0].error}")
        parsed = [parse_hint_answer(o.value) if o.value is not None else (None, "") for o in outcomes]
        votes = tuple(vote for vote, _ in parsed)
        text = select_best_hint(votes, [t for _, t in parsed], self.selection)
        return Hint(text=text, accepted=bool(text), votes=votes, source=self.name)


_CORRECTION = re.compile(
    r"^(?:no[,.!]?\s+(?:i (?:meant|said|asked|wanted)|it should|that should|use|make|please)"
    r"|actually[,:]?\s"
    r"|i (?:meant|said|asked for|wanted)\b"
    r"|(?:please\s+)?(?:don'?t|do not|never|stop)\s"
    r"|instead[,:]?\s"
    r"|(?:it|that|this) should (?:be|have)\b"
    r"|not\s+\S+.*,\s*but\s)",
    re.IGNORECASE,
)


def explicit_correction(text: str) -> str | None:
    """The correcting sentence(s) if the user's message opens with an explicit correction."""
    head = text.strip().replace("’", "'")
    if not head or not _CORRECTION.match(head):
        return None
    return normalize_hint(head)


class CorrectionHintExtractor:
    """Rule-based: the user's explicit correction, quoted, is the hint; abstains otherwise."""

    name = "rule:correction"

    def __init__(self, selection: HintSelection | None = None) -> None:
        self.selection = selection or HintSelection()

    async def extract(self, item: JudgeInput) -> Hint | None:
        """See the class docstring."""
        for message in item.next_messages:
            if message.get("role") != "user":
                continue
            correction = explicit_correction(content_text(message.get("content")))
            if correction is None:
                return None
            text = select_best_hint((1,), [f'The user wants this: "{correction}"'], self.selection)
            return Hint(text=text, accepted=bool(text), votes=(1,), source=self.name)
        return None


_EXIT_MARK = re.compile(r"\[exit code (-?\d+)\]\s*$")
_ERROR_LINE = re.compile(r"^\s*(?:\w+(?:Error|Exception)\b.*|error\b.*|.*: (?:command )?not found|.*No such file.*)$",
                         re.IGNORECASE | re.MULTILINE)


def failure_line(text: str) -> str | None:
    """The line that says why a tool answer failed, or None when it did not fail visibly."""
    stripped = text.strip()
    exit_code = _EXIT_MARK.search(stripped)
    failed = "Traceback (most recent call last):" in stripped or (exit_code is not None and exit_code.group(1) != "0")
    errors = _ERROR_LINE.findall(stripped)
    if not failed and not (errors and stripped.lower().startswith("error")):
        return None
    if errors:
        return normalize_hint(errors[-1])
    body = _EXIT_MARK.sub("", stripped).strip().splitlines()
    return normalize_hint(body[-1]) if body else f"exit code {exit_code.group(1) if exit_code else '?'}"


class ToolErrorHintExtractor:
    """Rule-based: a failed tool/environment answer's error line, quoted, is the hint; abstains otherwise."""

    name = "rule:tool_error"

    def __init__(self, selection: HintSelection | None = None) -> None:
        self.selection = selection or HintSelection()

    async def extract(self, item: JudgeInput) -> Hint | None:
        """See the class docstring."""
        for message in item.next_messages:
            if message.get("role") not in ("tool", "user"):
                continue
            line = failure_line(content_text(message.get("content")))
            if line is not None:
                text = select_best_hint((1,), [f'The last step failed with: "{line}". Do it so that this error '
                                               "cannot happen."], self.selection)
                return Hint(text=text, accepted=bool(text), votes=(1,), source=self.name)
        return None


class FirstHint:
    """Extractors in order; the first accepted hint wins, else the last non-abstaining answer."""

    def __init__(self, extractors: Sequence[HintExtractor]) -> None:
        if not extractors:
            raise ValueError("FirstHint needs at least one extractor")
        self.extractors = tuple(extractors)
        self.name = "first(" + ",".join(e.name for e in self.extractors) + ")"

    async def extract(self, item: JudgeInput) -> Hint | None:
        """See the class docstring."""
        fallback: Hint | None = None
        for extractor in self.extractors:
            hint = await extractor.extract(item)
            if hint is not None and hint.accepted:
                return hint
            fallback = hint if hint is not None else fallback
        return fallback
