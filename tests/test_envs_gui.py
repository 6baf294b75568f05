"""The ``gui`` environment in the real headless Chromium: the environment contract, a
scripted policy through MiniWoB++ pages to reward 1, fresh profiles, no leftover browser,
only local requests, and the generated task pages with their reference trajectories.

`make test` installs Debian's chromium first (`make chromium`); outside CI the tests skip,
with a reason, on a machine without it.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets

import pytest
from env_contract import EnvCase, EnvContract, processes_with

from slime_openclaw.envs import TaskError, build_env, builtin_tasks, reference_replies
from slime_openclaw.envs.browser import CHROMIUM, allowed
from slime_openclaw.envs.gui import miniwob_tasks
from slime_openclaw.envs.gui_pages import LEVELS, click_button, page
from slime_openclaw.envs.tools import assistant_call

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK) and not os.environ.get("CI"),
                                reason=f"{CHROMIUM} missing (make chromium installs it)")
TIMEOUT = 1.5
MAX_OUTPUT = 1500
SECRET = f"zq-{secrets.token_hex(6)}"
"""Kept only in the contract page's script: must never reach the agent."""
CONTRACT_PAGE = page(
    "contract", "Type ready into the field and press Submit.",
    '<input type="text" data-oc-id="2" oninput="document.getElementById(\'echo\').textContent = this.value">'
    '<button data-oc-id="3" onclick="check()">Submit</button>'
    '<input type="text" data-oc-id="4" value="locked" disabled><div id="echo"></div>',
    "ready", f"var NOTE = {json.dumps(SECRET)}; " "function check() { var v = "
    "document.querySelector('[data-oc-id=\"2\"]').value; endEpisode(v === EXPECTED ? 1 : -1, v); }")


def action(text: str) -> dict:
    """``click 3`` / ``type 2 some text`` / ``key Enter`` / ``scroll down`` as an assistant tool call."""
    name, _, rest = text.partition(" ")
    if name == "type":
        ref, _, typed = rest.partition(" ")
        return assistant_call("call_x", "type", {"id": ref, "text": typed})
    key = {"click": "id", "key": "name", "scroll": "direction"}[name]
    return assistant_call("call_x", name, {key: rest})


def gui_case() -> EnvCase:
    return EnvCase(
        make=lambda: build_env("gui", [f"timeout={TIMEOUT}", f"max_output={MAX_OUTPUT}"]),
        task={"id": "contract", "instruction": "Type ready into the field and press Submit.", "html": CONTRACT_PAGE},
        solve=[action("type 2 ready"), action("click 3")], call=action,
        forever="type 4 TOKEN",  # a disabled field never becomes editable
        flood="type 2 " + "flood " * 1000,
        peeks=["key Control+U", "key F12", "type 2 javascript:document.write(NOTE)", "click 99", "scroll down"],
        secret=SECRET, timeout=TIMEOUT, max_output=MAX_OUTPUT)


@pytest.fixture
def case() -> EnvCase:
    return gui_case()


class TestGuiContract(EnvContract):
    """The whole environment contract, in the real browser."""


def _find(view: str, kind: str, label: str) -> str:
    for line in view.splitlines():
        found = re.match(rf'\s*\[(\d+)\] {kind}\b.*?"{re.escape(label)}"', line)
        if found:
            return found.group(1)
    raise AssertionError(f"no {kind} {label!r} in the view:\n{view}")


async def test_a_scripted_policy_clicks_through_miniwob_pages_to_reward_one():
    env = build_env("gui", {})
    try:
        obs = await env.reset({"miniwob": "click-button", "seed": 7})
        view = obs.messages[-1]["content"]
        label = re.search(r'Click on the "(.+?)" button', view).group(1)
        step = await env.step(action(f"click {_find(view, 'button', label)}"))
        outcome = await env.outcome()
        assert step.done and step.info["end_reason"] == "page_done" and step.info["exit_code"] == 0
        assert outcome.passed and outcome.score == 1.0 and outcome.details["reward"] == 1.0
        assert os.path.getsize(step.info["screenshot"]) > 1000  # a PNG for vision models

        obs = await env.reset({"miniwob": "enter-text", "seed": 3})
        view = obs.messages[-1]["content"]
        text = re.search(r'Enter "(.+?)" into the text field', view).group(1)
        field = re.search(r"\[(\d+)\] input text", view).group(1)
        first = await env.step(action(f"type {field} {text}"))
        assert f'value="{text}"' in first.messages[0]["content"] and "Changed:" in first.messages[0]["content"]
        second = await env.step(action(f"click {_find(first.messages[0]['content'], 'button', 'Submit')}"))
        assert second.done and (await env.outcome()).passed
    finally:
        await env.close()


async def test_a_wrong_click_scores_zero_and_bad_calls_are_refused():
    env = build_env("gui", {"timeout": 2})
    try:
        task = click_button(random.Random(5))[1]
        obs = await env.reset(task)
        view = obs.messages[-1]["content"]
        right = task["solution"][0]["arguments"]["id"]
        refused = await env.step(action("click 999"))
        assert refused.info["exit_code"] == 1 and "no element [999]" in refused.info["tool_error"]
        odd = await env.step(action("scroll sideways"))
        assert "unknown direction" in odd.info["tool_error"] and not odd.done
        others = [m.group(1) for m in re.finditer(r'\[(\d+)\] button', view) if m.group(1) != right]
        step = await env.step(action(f"click {others[0]}"))
        outcome = await env.outcome()
        assert step.done and outcome.details["reward"] == -1.0 and outcome.score == 0.0 and not outcome.passed
    finally:
        await env.close()


async def test_every_episode_gets_a_fresh_profile_and_close_leaves_no_browser():
    remember = page("memory", "x", '<div id="seen" data-oc-id="2"></div>', None,
                    "document.getElementById('seen').textContent = 'seen ' + (localStorage.getItem('k') || 'none');"
                    " localStorage.setItem('k', 'old');")
    env = build_env("gui", {})
    try:
        first = await env.reset({"html": remember})
        profile = env.browser.profile
        assert processes_with(str(profile)), "chromium runs with the episode's profile"
        assert '"seen none"' in first.messages[-1]["content"]
        second = await env.reset({"html": remember})
        assert '"seen none"' in second.messages[-1]["content"], "nothing of the last episode is remembered"
        assert env.browser.profile != profile and not profile.exists() and not processes_with(str(profile))
        profile = env.browser.profile
    finally:
        await env.close()
    await env.close()
    assert not processes_with(str(profile)) and not profile.exists()


async def test_only_local_requests_leave_the_page():
    assert allowed("file:///tmp/x.html") and allowed("http://127.0.0.1:8080/a") and allowed("http://localhost/")
    assert not allowed("http://example.com/") and not allowed("https://10.0.0.1/") and not allowed("ftp://x/")
    env = build_env("gui", {"images": True})
    try:
        obs = await env.reset({"html": '<img src="http://example.com/pixel.png"><p>hello</p>'})
        outcome = await env.outcome()
        with pytest.raises(TaskError, match="only file:// and loopback"):
            await env.reset({"url": "http://example.com/"})
        assert env.browser.root is None, "a task that cannot open leaves no browser"
    finally:
        await env.close()
    assert outcome.details["blocked_requests"] == ["http://example.com/pixel.png"]
    text, image = obs.messages[-1]["content"]  # images=true: the screenshot for vision models
    assert '"hello"' in text["text"] and image["image_url"]["url"].startswith("data:image/png;base64,")


async def test_generated_pages_split_apart_and_their_reference_trajectories_earn_reward_one():
    train, evals = builtin_tasks("gui", "train"), builtin_tasks("gui", "eval")
    assert len(train) + len(evals) >= 50
    assert not {t["html"] for t in train} & {t["html"] for t in evals}
    assert builtin_tasks("gui", "train") == train, "deterministic"
    wob = miniwob_tasks("train", count=40), miniwob_tasks("eval", count=20)
    assert not {(t["miniwob"], t["seed"]) for t in wob[0]} & {(t["miniwob"], t["seed"]) for t in wob[1]}
    env = build_env("gui", {"screenshots": False})
    try:
        for task in evals[: len(LEVELS)]:  # one page of each kind
            await env.reset(task)
            steps = [await env.step(reply) for reply in reference_replies("gui", task)]
            outcome = await env.outcome()
            assert steps[-1].done and not any(s.done for s in steps[:-1]), task["kind"]
            assert outcome.passed and outcome.score == 1.0, (task["kind"], outcome)
    finally:
        await env.close()
