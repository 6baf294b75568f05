"""Generated ``terminal`` tasks: small file chores in five difficulty levels.

1. write a word into a file; make a directory with a file;
2. count the lines of a file; upper-case a file;
3. sum numbers; sort numbers; count matching lines;
4. write and run an executable script (three checks: partial scores);
5. move the ``.log`` files into a new directory (three checks).

Every task carries ``solution`` (shell commands that pass all checks) for reference
trajectories. Deterministic for a seed; train and eval never overlap (``splits``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from slime_openclaw.envs.splits import draw

WORDS = ["hello", "world", "apple", "river", "cloud", "stone", "tiger", "maple", "orbit", "pixel",
         "lemon", "ocean", "amber", "cedar", "delta", "ember", "frost", "grape", "honey", "ivory"]
NAMES = ["notes", "result", "answer", "greeting", "output", "report", "summary", "message", "record", "memo"]
DEFAULT_COUNT = {"train": 200, "eval": 60}

Made = tuple[Any, dict[str, Any]]


def _task(level: int, instruction: str, checks: list[tuple[str, str]], solution: list[str],
          files: dict[str, str] | None = None, check_files: dict[str, str] | None = None) -> dict[str, Any]:
    return {"difficulty": level, "instruction": instruction, "files": files or {},
            "checks": [{"name": n, "run": r} for n, r in checks], "check_files": check_files or {},
            "solution": solution}


def _equals(path: str, value: str) -> str:
    return f'[ "$(tr -d " \\n" < {path})" = "{value}" ]'


def write_word(rng: random.Random) -> Made:
    name, word = rng.choice(NAMES), rng.choice(WORDS)
    return ("write_word", name, word), _task(
        1, f"Create a file named {name}.txt that contains the word {word}.",
        [("content", f'[ "$(cat {name}.txt)" = "{word}" ]')], [f"echo {word} > {name}.txt"])


def make_dir(rng: random.Random) -> Made:
    folder, name = rng.choice(NAMES), rng.choice(WORDS)
    return ("make_dir", folder, name), _task(
        1, f"Create a directory named {folder} with an empty file named {name}.txt inside it.",
        [("file", f"[ -d {folder} ] && [ -f {folder}/{name}.txt ]")], [f"mkdir -p {folder} && touch {folder}/{name}.txt"])


def count_lines(rng: random.Random) -> Made:
    lines = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
    return ("count_lines", lines), _task(
        2, "Write the number of lines in words.txt to count.txt.",
        [("count", _equals("count.txt", str(len(lines))))], ["wc -l < words.txt > count.txt"],
        files={"words.txt": "\n".join(lines) + "\n"})


def upper_case(rng: random.Random) -> Made:
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(2, 6))]
    text = "\n".join(lines) + "\n"
    return ("upper_case", lines), _task(
        2, "Write the contents of words.txt in upper case to upper.txt.",
        [("upper", 'cmp -s "$CHECKS_DIR/expected.txt" upper.txt')], ["tr a-z A-Z < words.txt > upper.txt"],
        files={"words.txt": text}, check_files={"expected.txt": text.upper()})


def sum_numbers(rng: random.Random) -> Made:
    nums = [rng.randint(1, 99) for _ in range(rng.randint(3, 12))]
    return ("sum_numbers", nums), _task(
        3, "nums.txt holds one number per line. Write their sum to sum.txt.",
        [("sum", _equals("sum.txt", str(sum(nums))))], ["awk '{s+=$1} END {print s}' nums.txt > sum.txt"],
        files={"nums.txt": "\n".join(map(str, nums)) + "\n"})


def sort_numbers(rng: random.Random) -> Made:
    nums = rng.sample(range(1, 500), rng.randint(3, 10))
    expected = "\n".join(map(str, sorted(nums))) + "\n"
    return ("sort_numbers", nums), _task(
        3, "nums.txt holds one number per line. Write them sorted from smallest to largest, one per line, "
        "to sorted.txt.",
        [("sorted", 'cmp -s "$CHECKS_DIR/expected.txt" sorted.txt')], ["sort -n nums.txt > sorted.txt"],
        files={"nums.txt": "\n".join(map(str, nums)) + "\n"}, check_files={"expected.txt": expected})


def _count_is_unique(word: str, lines: list[str]) -> bool:
    """``word`` is in some line, and no other word of ``WORDS`` is in as many lines."""
    def count(w: str) -> int:
        return sum(w in line for line in lines)

    hits = count(word)
    return hits > 0 and all(count(other) != hits for other in WORDS if other != word)


def count_matches(rng: random.Random) -> Made:
    word = rng.choice(WORDS)
    lines = [f"{rng.choice(['INFO', 'WARN', 'ERROR'])} {rng.choice(WORDS)} {rng.randint(1, 9)}"
             for _ in range(rng.randint(4, 20))]
    while not _count_is_unique(word, lines):  # no other word's count (0 included) passes the check
        lines.append(f"INFO {word} {len(lines) % 9 + 1}")
    hits = sum(word in line for line in lines)
    return ("count_matches", word, lines), _task(
        3, f"Write the number of lines of log.txt that contain the word {word} to matches.txt.",
        [("matches", _equals("matches.txt", str(hits)))], [f"grep -c {word} log.txt > matches.txt"],
        files={"log.txt": "\n".join(lines) + "\n"})


def script(rng: random.Random) -> Made:
    name, word = rng.choice(NAMES), rng.choice(WORDS)
    return ("script", name, word), _task(
        4, f"Write an executable script {name}.sh that prints {word}, then run it and save its output in out.txt.",
        [("executable", f"[ -x {name}.sh ]"), ("prints", f'[ "$(./{name}.sh)" = "{word}" ]'),
         ("saved", f'[ "$(cat out.txt)" = "{word}" ]')],
        [f"printf '#!/bin/bash\\necho {word}\\n' > {name}.sh && chmod +x {name}.sh", f"./{name}.sh > out.txt"])


def move_logs(rng: random.Random) -> Made:
    logs = sorted(rng.sample(WORDS, rng.randint(2, 4)))
    others = sorted(rng.sample([n for n in NAMES], rng.randint(1, 3)))
    files = {f"{n}.log": f"{n} log\n" for n in logs} | {f"{n}.txt": f"{n}\n" for n in others}
    moved = " && ".join(f"[ -f logs/{n}.log ]" for n in logs)
    kept = " && ".join(f"[ -f {n}.txt ]" for n in others)
    return ("move_logs", logs, others), _task(
        5, "Move every .log file of the workspace into a new directory named logs; leave the other files where "
        "they are.",
        [("moved", moved), ("none_left", "! ls *.log >/dev/null 2>&1"), ("others_kept", kept)],
        ["mkdir -p logs && mv *.log logs/"], files=files)


LEVELS: list[list[Callable[[random.Random], Made]]] = [
    [write_word, make_dir], [count_lines, upper_case], [sum_numbers, sort_numbers, count_matches],
    [script], [move_logs],
]


def generate_tasks(split: str, *, seed: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (default 200 train / 60 eval) terminal tasks, levels cycling 1..5."""
    def make(rng: random.Random, index: int) -> Made:
        return rng.choice(LEVELS[index % len(LEVELS)])(rng)

    return draw("terminal", split, seed, count or DEFAULT_COUNT[split], make)
