"""Generated ``swe`` tasks: small Python packages with one planted bug and an issue text.

Four bug kinds, three templates each, in difficulty order: 1 wrong operator (``>`` for
``>=``, ``+`` for ``-``, ``//`` for ``/``), 2 wrong default (a keyword default that
contradicts the docstring), 3 off-by-one (page offsets, inclusive ranges, tail slices),
4 missing case (a flag word, zero in ``sign``, ``-y`` plurals). Each task is a package
``<pkg>/<module>.py`` with visible tests in ``tests/test_<module>.py``; the hidden tests
are that file plus the tests the issue asks for (``FAIL_TO_PASS``; the visible ones are
``PASS_TO_PASS``). ``solution`` is a Python edit that undoes the bug and a pytest run.
Package names and constants vary; deterministic for a seed; train and eval never overlap
(``splits``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slime_openclaw.envs.splits import draw

PACKAGES = ["inventory", "ledger", "geometry", "textkit", "timesheet", "payroll", "catalog", "scheduler",
            "metrics", "shipping", "library", "recipes", "garden", "tickets", "weather", "warehouse"]
DEFAULT_COUNT = {"train": 48, "eval": 16}


@dataclass(frozen=True)
class Bug:
    """One planted bug: correct module source, the text swapped in, tests and the issue."""

    kind: str
    module: str
    source: str
    good: str
    bad: str
    visible: dict[str, str]
    """Test name -> body of the tests that pass before and after the fix."""
    new: dict[str, str]
    """Test name -> body of the tests the fix must make pass."""
    issue: str


def paginate(rng: random.Random) -> Bug:
    size = rng.randint(3, 6)
    items = list(range(size * 3))
    return Bug("off_by_one", "pages", f'''"""Splitting lists into pages."""


def paginate(items, page, size={size}):
    """Return page number ``page`` (1-based) of ``items``, ``size`` items per page."""
    start = (page - 1) * size
    return items[start:start + size]


def page_count(total, size={size}):
    """How many pages ``total`` items fill."""
    return -(-total // size)
''', "start = (page - 1) * size", "start = page * size",
        {"test_page_count": f"assert pages.page_count(0) == 0\n    assert pages.page_count({size + 1}) == 2",
         "test_empty": "assert pages.paginate([], 1) == []"},
        {"test_first_page": f"assert pages.paginate(list(range({size * 3})), 1) == {items[:size]}",
         "test_last_page": f"assert pages.paginate(list(range({size * 3})), 3) == {items[2 * size:]}"},
        f"paginate() skips the first page\n\n`paginate(list(range({size * 3})), 1)` returns "
        f"`{items[size:2 * size]}`, but page 1 should be the first {size} items, `{items[:size]}`. "
        "Pages are numbered from 1.")


def numbers_between(rng: random.Random) -> Bug:
    lo = rng.randint(1, 20)
    hi = lo + rng.randint(2, 6)
    return Bug("off_by_one", "ranges", '''"""Integer ranges with both ends included."""


def numbers_between(lo, hi):
    """All integers from ``lo`` to ``hi``, both included."""
    return list(range(lo, hi + 1))


def span(lo, hi):
    """The distance from ``lo`` to ``hi``."""
    return hi - lo
''', "range(lo, hi + 1)", "range(lo, hi)",
        {"test_span": f"assert ranges.span({lo}, {hi}) == {hi - lo}",
         "test_reversed_is_empty": f"assert ranges.numbers_between({hi}, {lo}) == []"},
        {"test_both_ends": f"assert ranges.numbers_between({lo}, {hi}) == {list(range(lo, hi + 1))}",
         "test_single": f"assert ranges.numbers_between({lo}, {lo}) == [{lo}]"},
        f"numbers_between() leaves out the upper end\n\nThe docstring says both ends are included, but "
        f"`numbers_between({lo}, {hi})` returns `{list(range(lo, hi))}` without {hi}.")


def last_n(rng: random.Random) -> Bug:
    items = rng.sample(range(10, 99), rng.randint(5, 8))
    n = rng.randint(2, 4)
    return Bug("off_by_one", "sequences", '''"""Taking items from either end of a list."""


def first_n(items, n):
    """The first ``n`` items."""
    return items[:n]


def last_n(items, n):
    """The last ``n`` items (none for ``n <= 0``)."""
    return items[len(items) - n:] if n > 0 else []
''', "items[len(items) - n:]", "items[len(items) - n + 1:]",
        {"test_first": f"assert sequences.first_n({items}, {n}) == {items[:n]}",
         "test_zero": f"assert sequences.last_n({items}, 0) == []"},
        {"test_last": f"assert sequences.last_n({items}, {n}) == {items[-n:]}",
         "test_last_one": f"assert sequences.last_n({items}, 1) == [{items[-1]}]"},
        f"last_n() returns one item too few\n\n`last_n({items}, {n})` gives `{items[-n + 1:]}`; "
        f"expected the last {n} items, `{items[-n:]}`.")


def eligible(rng: random.Random) -> Bug:
    age = rng.choice([16, 18, 21, 65])
    return Bug("wrong_operator", "rules", f'''"""Eligibility rules."""


def is_eligible(age, minimum={age}):
    """True when ``age`` is at least ``minimum``."""
    return age >= minimum
''', "age >= minimum", "age > minimum",
        {"test_older": f"assert rules.is_eligible({age + 5})",
         "test_younger": f"assert not rules.is_eligible({age - 1})"},
        {"test_exact_age": f"assert rules.is_eligible({age})",
         "test_custom_minimum": "assert rules.is_eligible(30, minimum=30)"},
        f"is_eligible() rejects people who are exactly the minimum age\n\n`is_eligible({age})` returns "
        f"False, but the rule is \"at least {age}\".")


def discounted(rng: random.Random) -> Bug:
    price, percent = rng.choice([40, 80, 120, 200]), rng.choice([10, 20, 25, 50])
    return Bug("wrong_operator", "prices", '''"""Price calculations."""


def discounted(price, percent):
    """``price`` reduced by ``percent`` per cent, rounded to cents."""
    return round(price * (100 - percent) / 100, 2)
''', "(100 - percent)", "(100 + percent)",
        {"test_no_discount": f"assert prices.discounted({price}, 0) == {price}"},
        {"test_discount": f"assert prices.discounted({price}, {percent}) == {price * (100 - percent) / 100}",
         "test_full_discount": f"assert prices.discounted({price}, 100) == 0"},
        f"discounted() raises the price\n\n`discounted({price}, {percent})` returns "
        f"{price * (100 + percent) / 100}, expected {price * (100 - percent) / 100}.")


def mean(rng: random.Random) -> Bug:
    value = rng.randint(2, 9)
    return Bug("wrong_operator", "stats", '''"""Summary statistics."""


def mean(values):
    """The arithmetic mean of ``values``."""
    return sum(values) / len(values)
''', "sum(values) / len(values)", "sum(values) // len(values)",
        {"test_equal_values": f"assert stats.mean([{value}, {value}]) == {value}"},
        {"test_fraction": f"assert stats.mean([{value}, {value + 1}]) == {value + 0.5}",
         "test_small": "assert stats.mean([1, 2]) == 1.5"},
        f"mean() drops the fraction\n\n`mean([{value}, {value + 1}])` returns {value}, expected {value + 0.5}.")


def format_price(rng: random.Random) -> Bug:
    currency, wrong = rng.sample(["USD", "EUR", "GBP", "JPY", "CHF"], 2)
    return Bug("wrong_default", "money", f'''"""Formatting amounts of money."""


def format_price(amount, currency="{currency}"):
    """``amount`` with two decimals and its currency ({currency} unless given)."""
    return f"{{amount:.2f}} {{currency}}"
''', f'currency="{currency}"', f'currency="{wrong}"',
        {"test_explicit_currency": 'assert money.format_price(2, "SEK") == "2.00 SEK"'},
        {"test_default_currency": f'assert money.format_price(3.5) == "3.50 {currency}"'},
        f"format_price() uses the wrong default currency\n\n`format_price(3.5)` returns `3.50 {wrong}`; "
        f"the documented default is {currency}.")


def split_words(rng: random.Random) -> Bug:
    words = rng.sample(["alpha", "beta", "gamma", "delta", "omega", "sigma"], 3)
    return Bug("wrong_default", "words", '''"""Splitting text into words."""


def split_words(text, sep=None):
    """The words of ``text``, split at ``sep`` (any run of whitespace by default)."""
    return text.split(sep)
''', "sep=None", 'sep=" "',
        {"test_separator": f'assert words.split_words("{",".join(words)}", ",") == {words}'},
        {"test_whitespace_runs": f'assert words.split_words("{words[0]}  {words[1]}\\t{words[2]}") == {words}',
         "test_surrounding_space": f'assert words.split_words(" {words[0]} ") == ["{words[0]}"]'},
        f"split_words() does not split at runs of whitespace\n\n`split_words(\"{words[0]}  {words[1]}\")` returns "
        f"`['{words[0]}', '', '{words[1]}']`; by default it should split at any run of whitespace.")


def round_to(rng: random.Random) -> Bug:
    digits = rng.choice([1, 2, 3])
    value = round(rng.uniform(1, 9), 5)
    return Bug("wrong_default", "rounding", f'''"""Rounding helpers."""


def round_to(value, digits={digits}):
    """``value`` rounded to ``digits`` decimals ({digits} unless given)."""
    return round(value, digits)
''', f"digits={digits}", "digits=0",
        {"test_explicit_digits": f"assert rounding.round_to({value}, 4) == {round(value, 4)}"},
        {"test_default_digits": f"assert rounding.round_to({value}) == {round(value, digits)}"},
        f"round_to() ignores its documented default\n\n`round_to({value})` returns {round(value)}; "
        f"it should round to {digits} decimals by default ({round(value, digits)}).")


TRUE_WORDS = ["true", "yes", "on", "enabled", "1"]
FALSE_WORDS = ["false", "no", "off", "disabled", "0"]


def _set_line(name: str, words: list[str]) -> str:
    return f"{name} = {{{', '.join(repr(w) for w in words)}}}"


def parse_flag(rng: random.Random) -> Bug:
    word = rng.choice(TRUE_WORDS[1:4] + FALSE_WORDS[1:4])
    truthy = word in TRUE_WORDS
    name, words = ("TRUE_WORDS", TRUE_WORDS) if truthy else ("FALSE_WORDS", FALSE_WORDS)
    source = f'''"""Reading yes/no settings."""

{_set_line("TRUE_WORDS", TRUE_WORDS)}
{_set_line("FALSE_WORDS", FALSE_WORDS)}


def parse_flag(text):
    """True or False for a setting word (true/false, yes/no, on/off, enabled/disabled, 1/0)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not a flag: {{text!r}}")
'''
    return Bug("missing_case", "flags", source, _set_line(name, words), _set_line(name, [w for w in words if w != word]),
               {"test_true": 'assert flags.parse_flag("True") is True', "test_false": 'assert flags.parse_flag(" 0") is False'},
               {"test_missing_word": f'assert flags.parse_flag("{word}") is {truthy}',
                "test_missing_word_upper": f'assert flags.parse_flag("{word.upper()}") is {truthy}'},
               f"parse_flag() rejects \"{word}\"\n\n`parse_flag(\"{word}\")` raises `ValueError: not a flag: "
               f"'{word}'`; the docstring lists it, and it should give {truthy}.")


def sign(rng: random.Random) -> Bug:
    value = rng.randint(2, 50)
    return Bug("missing_case", "numbers", '''"""Number helpers."""


def sign(x):
    """1 for positive ``x``, -1 for negative, 0 for zero."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0
''', "    if x < 0:\n        return -1\n    return 0\n", "    return -1\n",
        {"test_positive": f"assert numbers.sign({value}) == 1", "test_negative": f"assert numbers.sign(-{value}) == -1"},
        {"test_zero": "assert numbers.sign(0) == 0", "test_zero_float": "assert numbers.sign(0.0) == 0"},
        "sign(0) returns -1\n\nThe docstring says zero has sign 0, but `sign(0)` returns -1.")


def plural(rng: random.Random) -> Bug:
    word = rng.choice(["city", "berry", "party", "story", "lady", "penny", "fly"])
    return Bug("missing_case", "text", '''"""English word forms."""


def plural(word):
    """The plural of a regular English noun."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"
''', '    if word.endswith("y") and word[-2:-1] not in "aeiou":\n        return word[:-1] + "ies"\n    return word + "s"\n',
        '    return word + "s"\n',
        {"test_regular": 'assert text.plural("cat") == "cats"', "test_es": 'assert text.plural("box") == "boxes"',
         "test_vowel_y": 'assert text.plural("day") == "days"'},
        {"test_consonant_y": f'assert text.plural("{word}") == "{word[:-1]}ies"'},
        f"plural() is wrong for nouns ending in a consonant and y\n\n`plural(\"{word}\")` returns "
        f"`{word}s`, expected `{word[:-1]}ies`.")


KINDS: list[list[Callable[[random.Random], Bug]]] = [
    [eligible, discounted, mean], [format_price, split_words, round_to],
    [paginate, numbers_between, last_n], [parse_flag, sign, plural],
]
"""Bug templates by difficulty (1 wrong operator ... 4 missing case)."""


def _test_file(pkg: str, module: str, tests: dict[str, str]) -> str:
    body = "".join(f"\n\ndef {name}():\n    {code}\n" for name, code in tests.items())
    return f"from {pkg} import {module}\n{body}"


def edit_command(path: str, bad: str, good: str) -> str:
    """A shell command that replaces the first ``bad`` in ``path`` with ``good`` (a Python edit)."""
    return (f"python3 - <<'EOF'\nfrom pathlib import Path\npath = Path({path!r})\n"
            f"path.write_text(path.read_text().replace({bad!r}, {good!r}, 1))\nEOF")


def make_task(rng: random.Random, index: int) -> tuple[Any, dict[str, Any]]:
    """One repository: (content key, task) for ``splits.draw``."""
    level = index % len(KINDS)
    template = rng.choice(KINDS[level])
    bug = template(rng)
    pkg = rng.choice(PACKAGES)
    buggy = bug.source.replace(bug.good, bug.bad, 1)
    assert bug.good in bug.source and buggy.count(bug.bad) == 1, template.__name__
    source_path, test_path = f"{pkg}/{bug.module}.py", f"tests/test_{bug.module}.py"
    files = {f"{pkg}/__init__.py": f'"""{pkg}: small helpers."""\n', source_path: buggy,
             test_path: _test_file(pkg, bug.module, bug.visible),
             "README.md": f"# {pkg}\n\nRun the tests with `python3 -m pytest`.\n"}
    key = [template.__name__, pkg, bug.issue]
    return key, {
        "difficulty": level + 1, "kind": bug.kind, "issue": bug.issue, "files": files,
        "hidden_tests": {test_path: _test_file(pkg, bug.module, {**bug.visible, **bug.new})},
        "FAIL_TO_PASS": [f"{test_path}::{name}" for name in bug.new],
        "PASS_TO_PASS": [f"{test_path}::{name}" for name in bug.visible],
        "solution": [edit_command(source_path, bug.bad, bug.good), "python3 -m pytest -q"],
    }


def generate_tasks(split: str, *, seed: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (default 48 train / 16 eval) repositories, bug kinds cycling by difficulty."""
    return draw("swe", split, seed, count or DEFAULT_COUNT[split], lambda rng, index: make_task(rng, index))
