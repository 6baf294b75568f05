"""Generated ``toolcall`` tasks: arithmetic word problems in five difficulty levels.

1. add or take away small numbers;
2. packs times size minus a gift; speed times hours (numbers a tool helps with);
3. leftovers of an equal share; the sum of a range of integers;
4. integers up to n divisible by p or q; savings that grow each week;
5. a power modulo a number.

Answers are integers written as decimal strings. Every task carries ``solution_code``
(Python that prints the answer) for reference trajectories, and ``mistaken_code`` /
``mistaken_answer``: the program of a plausible misreading of the question (the share each
child gets instead of the rest, a range without its end, ...) and what it prints, for
pre-training data with errors of strategy that RL can correct (``p_mistaken``). Deterministic for a seed;
train and eval never overlap (``splits``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from slime_openclaw.envs.splits import draw

PEOPLE = ["Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kai", "Lena"]
DEFAULT_COUNT = {"train": 200, "eval": 60}

Made = tuple[Any, dict[str, Any]]


def _task(level: int, question: str, code: str, answer: int, mistaken: tuple[str, int]) -> dict[str, Any]:
    return {"difficulty": level, "question": question, "answer": str(answer), "solution_code": code,
            "mistaken_code": mistaken[0], "mistaken_answer": str(mistaken[1])}


def add(rng: random.Random) -> Made:
    who, a, b = rng.choice(PEOPLE), rng.randint(2, 30), rng.randint(2, 30)
    return ("add", who, a, b), _task(
        1, f"{who} has {a} apples and buys {b} more. How many apples does {who} have now?", f"print({a} + {b})", a + b,
        (f"print({a} * {b})", a * b))


def take(rng: random.Random) -> Made:
    a = rng.randint(10, 60)
    b = rng.randint(1, a - 1)
    return ("take", a, b), _task(
        1, f"A box holds {a} pencils. {b} pencils are taken out. How many pencils are left in the box?",
        f"print({a} - {b})", a - b,
        (f"print({a} + {b})", a + b))


def packs(rng: random.Random) -> Made:
    who, a, b = rng.choice(PEOPLE), rng.randint(3, 15), rng.randint(4, 25)
    c = rng.randint(1, a * b - 1)
    return ("packs", who, a, b, c), _task(
        2, f"{who} buys {a} packs of {b} stickers and gives away {c} stickers. How many stickers does {who} keep?",
        f"print({a} * {b} - {c})", a * b - c,
        (f"print({a} * {b} + {c})", a * b + c))


def distance(rng: random.Random) -> Made:
    speed, hours = rng.randint(41, 389), rng.randint(3, 27)
    return ("distance", speed, hours), _task(
        2, f"A train travels {speed} km every hour for {hours} hours. How many km does it travel?",
        f"print({speed} * {hours})", speed * hours,
        (f"print({speed} + {hours})", speed + hours))


def share(rng: random.Random) -> Made:
    kids, candies = rng.randint(3, 19), rng.randint(40, 999)
    return ("share", kids, candies), _task(
        3, f"{candies} candies are shared equally among {kids} children, each getting as many as possible; "
        "the teacher keeps the rest. How many candies does the teacher keep?", f"print({candies} % {kids})", candies % kids,
        (f"print({candies} // {kids})", candies // kids))


def range_sum(rng: random.Random) -> Made:
    low = rng.randint(1, 60)
    high = low + rng.randint(10, 400)
    return ("range_sum", low, high), _task(
        3, f"What is the sum of all integers from {low} to {high}, inclusive?",
        f"print(sum(range({low}, {high} + 1)))", sum(range(low, high + 1)),
        (f"print(sum(range({low}, {high})))", sum(range(low, high))))


def divisible(rng: random.Random) -> Made:
    n = rng.randint(50, 2000)
    p, q = rng.sample([2, 3, 5, 7, 11, 13], 2)
    return ("divisible", n, p, q), _task(
        4, f"How many integers from 1 to {n} are divisible by {p} or by {q}?",
        f"print(sum(1 for k in range(1, {n} + 1) if k % {p} == 0 or k % {q} == 0))",
        n // p + n // q - n // (p * q),
        (f"print(sum(1 for k in range(1, {n} + 1) if k % {p} == 0 and k % {q} == 0))", n // (p * q)))


def savings(rng: random.Random) -> Made:
    who, first, more, weeks = rng.choice(PEOPLE), rng.randint(1, 20), rng.randint(1, 9), rng.randint(4, 30)
    return ("savings", who, first, more, weeks), _task(
        4, f"{who} saves {first} dollars in the first week and each week saves {more} dollars more than the week "
        f"before. How many dollars has {who} saved in total after {weeks} weeks?",
        f"print(sum({first} + {more} * w for w in range({weeks})))",
        weeks * first + more * weeks * (weeks - 1) // 2,
        (f"print({first} * {weeks})", first * weeks))


def power_mod(rng: random.Random) -> Made:
    base, exp, mod = rng.randint(2, 30), rng.randint(10, 200), rng.randint(7, 97)
    return ("power_mod", base, exp, mod), _task(
        5, f"What is the remainder when {base} to the power {exp} is divided by {mod}?",
        f"print(pow({base}, {exp}, {mod}))", pow(base, exp, mod),
        (f"print({base} * {exp} % {mod})", base * exp % mod))


LEVELS: list[list[Callable[[random.Random], Made]]] = [
    [add, take], [packs, distance], [share, range_sum], [divisible, savings], [power_mod],
]


def generate_tasks(split: str, *, seed: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (default 200 train / 60 eval) word problems, levels cycling 1..5."""
    def make(rng: random.Random, index: int) -> Made:
        return rng.choice(LEVELS[index % len(LEVELS)])(rng)

    return draw("toolcall", split, seed, count or DEFAULT_COUNT[split], make)
