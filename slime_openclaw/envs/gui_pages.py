"""Generated ``gui`` task pages: small HTML forms that compute their own reward in JavaScript.

Five kinds in rising difficulty: click the named button; type a text into a field and
submit; pick an option from a list and submit; tick exactly the named boxes and submit;
log in with a user name and password, submitting with the Enter key. A page reports its
result the way MiniWoB++ pages do (``WOB_DONE_GLOBAL``, ``WOB_RAW_REWARD_GLOBAL`` in
[-1, 1], ``WOB_REWARD_REASON``), so one reader serves both. Elements carry fixed
``data-oc-id`` numbers, so every task also carries ``solution``: the tool calls that earn
reward 1 (for reference trajectories). Deterministic for a seed; train and eval never
overlap (``splits``).
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Callable
from typing import Any

from slime_openclaw.envs.splits import draw

WORDS = ["submit", "okay", "next", "cancel", "apply", "save", "send", "delete", "open", "close",
         "accept", "retry", "finish", "start", "search", "reset", "upload", "share", "print", "help"]
NAMES = ["alice", "bruno", "chen", "dara", "emil", "fatima", "goran", "hana", "ivan", "jun", "kofi", "lena"]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray", "cyan"]
DEFAULT_COUNT = {"train": 120, "eval": 40}

Made = tuple[Any, dict[str, Any]]

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; margin: 12px; }} #query {{ background: #ffd; padding: 6px; }}
button, input, select {{ margin: 4px; }}</style></head>
<body><div id="query" data-oc-id="1">{instruction}</div>
<div id="area">{body}</div>
<script>
var WOB_DONE_GLOBAL = false, WOB_RAW_REWARD_GLOBAL = 0, WOB_REWARD_REASON = null;
function endEpisode(reward, reason) {{
  if (WOB_DONE_GLOBAL) return;
  WOB_DONE_GLOBAL = true; WOB_RAW_REWARD_GLOBAL = reward; WOB_REWARD_REASON = reason;
  document.getElementById('area').innerHTML = '<p>Episode over.</p>';
}}
var EXPECTED = {expected};
{script}
</script></body></html>
"""


def page(title: str, instruction: str, body: str, expected: Any, script: str) -> str:
    """A task page: the instruction (element [1]), the body, and the reward script."""
    return PAGE.format(title=html.escape(title), instruction=html.escape(instruction), body=body,
                       expected=json.dumps(expected), script=script)


def call(tool: str, **arguments: str) -> dict[str, Any]:
    """One tool call of a solution."""
    return {"name": tool, "arguments": arguments}


def _task(level: int, kind: str, instruction: str, body: str, expected: Any, script: str,
          solution: list[dict[str, Any]]) -> dict[str, Any]:
    return {"difficulty": level, "kind": kind, "instruction": instruction,
            "html": page(kind, instruction, body, expected, script), "solution": solution}


def _button(ref: int, label: str, onclick: str) -> str:
    return f'<button data-oc-id="{ref}" onclick="{onclick}">{html.escape(label)}</button>'


def click_button(rng: random.Random) -> Made:
    labels = rng.sample(WORDS, rng.randint(2, 6))
    target = rng.randrange(len(labels))
    body = " ".join(_button(2 + i, label, f"choose({i})") for i, label in enumerate(labels))
    script = "function choose(i) { endEpisode(i === EXPECTED ? 1 : -1, 'clicked button ' + i); }"
    return ("click_button", labels, target), _task(
        1, "click_button", f'Click the button labelled "{labels[target]}".', body, target, script,
        [call("click", id=str(2 + target))])


def _submit(ref: int) -> str:
    return _button(ref, "Submit", "check()")


def type_text(rng: random.Random) -> Made:
    text = " ".join(rng.sample(NAMES + COLORS, rng.randint(1, 3)))
    body = f'<label>Text: <input type="text" data-oc-id="2"></label><br>{_submit(3)}'
    script = ("function check() { var v = document.querySelector('[data-oc-id=\"2\"]').value.trim();"
              " endEpisode(v === EXPECTED ? 1 : -1, 'typed ' + JSON.stringify(v)); }")
    return ("type_text", text), _task(
        2, "type_text", f'Type "{text}" into the text field and press Submit.', body, text, script,
        [call("type", id="2", text=text), call("click", id="3")])


def pick_option(rng: random.Random) -> Made:
    options = rng.sample(COLORS, rng.randint(3, 7))
    target = rng.choice(options)
    items = "".join(f"<option>{o}</option>" for o in ["choose one", *options])
    body = f'<label>Colour: <select data-oc-id="2">{items}</select></label><br>{_submit(3)}'
    script = ("function check() { var s = document.querySelector('[data-oc-id=\"2\"]');"
              " var v = s.options[s.selectedIndex].text; endEpisode(v === EXPECTED ? 1 : -1, 'picked ' + v); }")
    return ("pick_option", options, target), _task(
        3, "pick_option", f'Select "{target}" from the list and press Submit.', body, target, script,
        [call("type", id="2", text=target), call("click", id="3")])


def check_boxes(rng: random.Random) -> Made:
    boxes = rng.sample(COLORS, rng.randint(3, 6))
    chosen = sorted(rng.sample(range(len(boxes)), rng.randint(1, min(3, len(boxes) - 1))))
    body = "".join(f'<label><input type="checkbox" data-oc-id="{2 + i}" value="{b}">{b}</label><br>'
                   for i, b in enumerate(boxes)) + _submit(2 + len(boxes))
    names = [boxes[i] for i in chosen]
    script = ("function check() { var got = Array.from(document.querySelectorAll('input:checked'))"
              ".map(function (b) { return b.value; }).sort();"
              " endEpisode(JSON.stringify(got) === JSON.stringify(EXPECTED) ? 1 : -1, 'ticked ' + got.join(',')); }")
    return ("check_boxes", boxes, chosen), _task(
        4, "check_boxes", "Tick exactly these boxes and press Submit: " + ", ".join(names) + ".", body,
        sorted(names), script, [*(call("click", id=str(2 + i)) for i in chosen), call("click", id=str(2 + len(boxes)))])


def login(rng: random.Random) -> Made:
    user, secret = rng.choice(NAMES), f"{rng.choice(COLORS)}{rng.randint(10, 99)}"
    body = ('<form onsubmit="check(); return false;"><label>User: <input type="text" data-oc-id="2"></label><br>'
            '<label>Password: <input type="password" data-oc-id="3"></label><br>'
            '<button data-oc-id="4" type="submit">Log in</button></form>')
    script = ("function check() { var u = document.querySelector('[data-oc-id=\"2\"]').value,"
              " p = document.querySelector('[data-oc-id=\"3\"]').value;"
              " endEpisode(u === EXPECTED[0] && p === EXPECTED[1] ? 1 : -1, 'login as ' + u); }")
    return ("login", user, secret), _task(
        5, "login", f'Log in as "{user}" with the password "{secret}" (press Enter to submit).', body,
        [user, secret], script, [call("type", id="2", text=user), call("type", id="3", text=secret),
                                 call("key", name="Enter")])


LEVELS: list[Callable[[random.Random], Made]] = [click_button, type_text, pick_option, check_boxes, login]


def generate_tasks(split: str, *, seed: int = 0, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (default 120 train / 40 eval) task pages, kinds cycling by difficulty."""
    total = DEFAULT_COUNT.get(split, 0) if count is None else count
    return draw("gui", split, seed, total, lambda rng, index: LEVELS[index % len(LEVELS)](rng))
