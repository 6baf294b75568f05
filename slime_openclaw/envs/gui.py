"""``gui``: a web page in a real headless Chromium per episode, scored by the page itself.

Tools: ``click(id)``, ``type(id, text)`` (fills a text field; on a ``<select>`` it picks
the option with that label), ``key(name)`` (a Playwright key name: ``Enter``, ``Tab``,
``ArrowDown``, ``Control+A``) and ``scroll(direction)`` (``up``, ``down``, ``left``,
``right``). ``id`` is the number ``[n]`` of an element in the page's text view
(``browser.VIEW_JS``). Each tool message says what the action did, which lines of the
view changed, and the whole view after it (cut to ``max_output`` bytes with a marker):
that is the step's next state. With ``screenshots`` (default) a PNG of the page after
each step is at ``Step.info["screenshot"]`` (inside the episode directory, removed by
``close``); with ``images`` the opening message and every step also carry the screenshot
as an OpenAI ``image_url`` part, for vision models.

Task (one JSON line), one of::

    {"html": "<!DOCTYPE html>...", "instruction": "...", "solution": [...]}   # a page
    {"miniwob": "click-button", "seed": 3}              # a MiniWoB++ page of the miniwob package
    {"url": "http://127.0.0.1:8000/task.html", "instruction": "..."}       # a loopback page

A page reports its result as MiniWoB++ pages do: ``WOB_DONE_GLOBAL`` and
``WOB_RAW_REWARD_GLOBAL`` (in [-1, 1]). Outcome: score ``(reward + 1) / 2``, ``passed`` when
the reward is 1; a page that never reported (the agent gave up, a turn limit, a timed-out
or unparsable action) scores 0 — the harness never reports a result for the page. The
episode ends when the page reports, at a reply without a tool call, or at ``max_turns``.
Generated tasks: ``gui_pages`` (with ``solution``, for reference trajectories);
``miniwob_tasks`` draws MiniWoB++ (name, seed) tasks with the same disjoint splits.
"""

from __future__ import annotations

import base64
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

from slime_openclaw.envs import gui_pages
from slime_openclaw.envs.base import Environment, Message, Observation, Outcome, Step
from slime_openclaw.envs.browser import Browser
from slime_openclaw.envs.gui_actions import TOOLS, perform
from slime_openclaw.envs.splits import draw
from slime_openclaw.envs.tasks import TaskError, require
from slime_openclaw.envs.tools import assistant_call, parse_tool_calls, tool_message

SYSTEM_PROMPT = (
    "You operate a web page through tools. The page is shown as a text view: one element per line, "
    "each with its number in brackets. Use click(id), type(id, text), key(name) and scroll(direction) "
    "with those numbers. The task ends when the page has checked your work."
)
MINIWOB_TASKS = ["click-button", "click-button-sequence", "click-checkboxes", "click-dialog", "click-dialog-2",
                 "click-link", "click-option", "click-tab", "click-test", "click-test-2", "click-widget",
                 "enter-password", "enter-text", "enter-text-2", "focus-text", "focus-text-2", "login-user",
                 "navigate-tree", "unicode-test"]
"""MiniWoB++ tasks a text-view agent can solve with these tools (``miniwob_tasks`` draws from them)."""
READ_REWARD = "[WOB_DONE_GLOBAL === true, Number(WOB_RAW_REWARD_GLOBAL) || 0, String(WOB_REWARD_REASON)]"


class GuiEnv(Environment):
    """One web page in a fresh headless Chromium per episode."""

    def __init__(self, timeout: float = 5.0, max_output: int = 6000, max_turns: int = 12,
                 screenshots: bool = True, images: bool = False, episode_seconds: float = 600.0,
                 chromium: str = "/usr/bin/chromium"):
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.timeout, self.max_output, self.max_turns = timeout, max_output, max_turns
        self.screenshots, self.images = screenshots or images, images
        self.episode_seconds, self.chromium = episode_seconds, chromium
        self.browser: Browser | None = None
        self.task: dict[str, Any] = {}
        self.turns, self.done, self.end_reason = 0, False, ""
        self.page_view = ""
        self.reward: tuple[bool, float, str] | None = None
        self._outcome: Outcome | None = None

    generate_tasks = staticmethod(gui_pages.generate_tasks)

    @staticmethod
    def reference_replies(task: dict[str, Any]) -> list[Message]:
        """One assistant message per ``solution`` tool call (a page that ends after the last)."""
        solution = require(task, "solution", list, "gui")
        return [assistant_call(f"call_{i}", c["name"], c["arguments"]) for i, c in enumerate(solution)]

    async def reset(self, task: dict[str, Any]) -> Observation:
        await self.close()
        self.task, self.turns, self.done, self.end_reason = task, 0, False, ""
        self.reward, self._outcome = None, None
        self.browser = Browser(executable=self.chromium, timeout=self.timeout)
        await self.browser.start()
        try:
            instruction = await self._open(task)
            self.page_view = await self.browser.view()
        except BaseException:
            await self.browser.close()  # a task that cannot open leaves no browser behind
            raise
        text = f"{instruction}\n\nThe page:\n{self.page_view}"
        opening: Message = {"role": "user", "content": self._cut(text)}
        if self.images:
            opening["content"] = [{"type": "text", "text": opening["content"]},
                                  await self._image(await self.browser.screenshot("step-0.png"))]
        return Observation(messages=[{"role": "system", "content": SYSTEM_PROMPT}, opening], tools=TOOLS)

    async def _open(self, task: dict[str, Any]) -> str:
        """Load the task's page; returns the instruction."""
        assert self.browser is not None and self.browser.root is not None
        if "miniwob" in task:
            return await self._open_miniwob(task)
        if "url" in task:
            url = require(task, "url", str, "gui")
        else:
            page = self.browser.root / "task.html"
            page.write_text(require(task, "html", str, "gui"))
            url = page.as_uri()
        try:
            await self.browser.goto(url)
        except Exception as exc:
            raise TaskError(f"gui task {task.get('id', '?')!r}: cannot open {url!r} ({exc})") from None
        return str(task.get("instruction") or "Do what the page asks.")

    async def _open_miniwob(self, task: dict[str, Any]) -> str:
        assert self.browser is not None
        page = miniwob_page(require(task, "miniwob", str, "gui"))
        seed = task.get("seed", 0)
        await self.browser.goto(page.as_uri())
        await self.browser.evaluate(
            f"Math.seedrandom({seed!r}); core.EPISODE_MAX_TIME = {int(self.episode_seconds * 1000)}; "
            "core.startEpisodeReal(); var d = document.getElementById('reward-display'); "
            "if (d) d.style.display = 'none';")
        await self.browser.page.wait_for_function("WOB_TASK_READY === true", timeout=self.timeout * 1000)
        return str(task.get("instruction") or await self.browser.evaluate("core.getUtterance()"))

    async def step(self, reply: Message) -> Step:
        if self.browser is None:
            raise RuntimeError("step() before reset()")
        if self.done:
            raise RuntimeError("the episode is over; call reset() for a new one")
        self.turns += 1
        calls = parse_tool_calls(reply, TOOLS)
        info: dict[str, Any] = {}
        messages = [tool_message(call.id, await self._answer(call, info)) for call in calls]
        if calls:
            self.reward = await self._read_reward()
            if self.screenshots:
                info["screenshot"] = await self.browser.screenshot(f"step-{self.turns}.png")
                if self.images:
                    messages.append({"role": "user", "content": [await self._image(info["screenshot"])]})
        if not calls:
            self.done, self.end_reason = True, "no_tool_call"
        elif self.reward is not None and self.reward[0]:
            self.done, self.end_reason = True, "page_done"
        elif self.turns >= self.max_turns:
            self.done, self.end_reason = True, "max_turns"
        info["end_reason"] = self.end_reason
        return Step(messages=messages, done=self.done, info=info)

    async def _answer(self, call: Any, info: dict[str, Any]) -> str:
        """Carry out one call; returns its tool message text (result, changes, page)."""
        assert self.browser is not None
        if call.error:
            result, signals = f"error: {call.error}", {"exit_code": 1, "timed_out": False, "tool_error": call.error}
        else:
            result, signals = await perform(self.browser, call.name, call.arguments, self.timeout)
        info["timed_out"] = bool(info.get("timed_out")) or bool(signals.get("timed_out"))
        if info.get("exit_code", 0) == 0:
            info["exit_code"] = signals["exit_code"]
        if signals.get("tool_error"):
            info["tool_error"] = signals["tool_error"]
        before, self.page_view = self.page_view, await self._safe_view()
        text = f"{result}\n\n{changes(before, self.page_view)}\n\nThe page:\n{self.page_view}"
        cut = self._cut(text)
        info["truncated"] = bool(info.get("truncated")) or cut != text
        return cut

    async def _safe_view(self) -> str:
        assert self.browser is not None
        try:
            return await self.browser.view()
        except Exception as exc:  # a page that navigates away or hangs: say so, keep going
            return f"(the page cannot be read: {str(exc).splitlines()[0]})"

    async def _read_reward(self) -> tuple[bool, float, str] | None:
        assert self.browser is not None
        try:
            done, reward, reason = await self.browser.evaluate(READ_REWARD)
        except Exception:  # a page without the reward globals has reported nothing
            return self.reward
        return bool(done), float(reward), str(reason)

    def _cut(self, text: str) -> str:
        return cut_text(text, self.max_output)

    async def _image(self, path: str) -> dict[str, Any]:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}

    async def outcome(self) -> Outcome:
        if self.browser is None and self._outcome is None:
            raise RuntimeError("outcome() before reset()")
        if self._outcome is None:
            if self.browser is not None and self.browser.page is not None and not (self.reward and self.reward[0]):
                self.reward = await self._read_reward()
            self._outcome = measure(self.reward, {"turns": self.turns, "end_reason": self.end_reason or "not_finished",
                                                  "blocked_requests": list(self.browser.blocked if self.browser else [])})
        return self._outcome

    async def close(self) -> None:
        if self.browser is not None:
            await self.browser.close()


def measure(reward: tuple[bool, float, str] | None, details: dict[str, Any]) -> Outcome:
    """The outcome from the page's own report (none: score 0)."""
    if reward is None or not reward[0]:
        return Outcome(score=0.0, passed=False, details={**details, "page_done": False, "reward": None})
    _, raw, reason = reward
    score = min(1.0, max(0.0, (raw + 1.0) / 2.0))
    return Outcome(score=score, passed=raw >= 1.0 - 1e-9,
                   details={**details, "page_done": True, "reward": raw, "reason": reason})


def changes(before: str, after: str, limit: int = 30) -> str:
    """The lines of the view that changed (``+`` new, ``-`` gone), or that nothing did."""
    diff = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:2] in ("+ ", "- ")]
    if not diff:
        return "The page did not change."
    more = f"\n(... {len(diff) - limit} more changed lines)" if len(diff) > limit else ""
    return "Changed:\n" + "\n".join(diff[:limit]) + more


def cut_text(text: str, limit: int) -> str:
    """``text`` bounded to about ``limit`` bytes: head and tail with a marker in between."""
    data = text.encode()
    if len(data) <= limit:
        return text
    head, tail = data[: limit - limit // 2], data[len(data) - limit // 2:]
    dropped = len(data) - len(head) - len(tail)
    return (f"{head.decode(errors='ignore')}\n[... {dropped} bytes of output truncated ...]\n"
            f"{tail.decode(errors='ignore')}")


def miniwob_page(name: str) -> Path:
    """The HTML file of MiniWoB++ task ``name`` in the installed ``miniwob`` package."""
    try:
        root = Path(str(resources.files("miniwob"))) / "html" / "miniwob"
    except ModuleNotFoundError:
        raise TaskError("gui task: MiniWoB++ pages need the miniwob package (pip install miniwob)") from None
    page = root / f"{name}.html"
    if not name.replace("-", "").isalnum() or not page.is_file():
        raise TaskError(f"gui task: no MiniWoB++ page {name!r} (e.g. {', '.join(MINIWOB_TASKS[:4])})")
    return page


def miniwob_tasks(split: str, *, seed: int = 0, count: int = 60,
                  names: list[str] | None = None) -> list[dict[str, Any]]:
    """``count`` MiniWoB++ (page, seed) tasks of ``split``; a (page, seed) pair is in one split only."""
    pool = names or MINIWOB_TASKS

    def make(rng: Any, index: int) -> tuple[Any, dict[str, Any]]:
        name, page_seed = pool[index % len(pool)], rng.randrange(10_000)
        return ("miniwob", name, page_seed), {"miniwob": name, "seed": page_seed}

    return draw("gui-miniwob", split, seed, count, make)
