"""The ``gui`` tools and how each one acts on the page (Playwright calls with a deadline).

``perform(browser, name, arguments, timeout)`` returns the text that says what happened
and ``Step.info`` signals: ``exit_code`` 0 (done), 1 (refused: no such element, no such
option, unknown key or direction; ``tool_error`` says why) or ``None`` with
``timed_out`` when the page did not let the action finish in time (an element that stays
disabled or hidden, a page that hangs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from slime_openclaw.envs.browser import Browser
from slime_openclaw.envs.tools import function_tool

TOOLS = [
    function_tool("click", "Click the element with this number in the page view.",
                  {"id": "the element's number, e.g. \"4\""}),
    function_tool("type", "Replace the text of a text field with this text (on a list: pick the option "
                  "with this label).", {"id": "the element's number", "text": "the text to enter"}),
    function_tool("key", "Press a key on the focused element (Enter, Tab, Escape, ArrowDown, Backspace, "
                  "Control+A, ...).", {"name": "the key name"}),
    function_tool("scroll", "Scroll the page.", {"direction": "up, down, left or right"}),
]
SCROLL = {"up": (0, -400), "down": (0, 400), "left": (-400, 0), "right": (400, 0)}


def _refused(why: str) -> tuple[str, dict[str, Any]]:
    return f"error: {why}", {"exit_code": 1, "timed_out": False, "tool_error": why}


async def perform(browser: Browser, name: str, arguments: dict[str, Any],
                  timeout: float) -> tuple[str, dict[str, Any]]:
    """Carry out one tool call on the page."""
    from playwright.async_api import Error, TimeoutError

    what = _describe(name, arguments)
    try:
        result = await asyncio.wait_for(_act(browser, name, arguments, timeout), timeout + 5)
    except (TimeoutError, asyncio.TimeoutError):
        return (f"error: {what} timed out after {timeout:g} s (the page did not let it finish)",
                {"exit_code": None, "timed_out": True, "tool_error": f"{what} timed out"})
    except Error as exc:
        return _refused(f"{what} failed: {str(exc).splitlines()[0]}")
    if isinstance(result, tuple):
        return result
    return f"{what}: done.", {"exit_code": 0, "timed_out": False}


def _describe(name: str, arguments: dict[str, Any]) -> str:
    if name == "type":
        return f"type into [{arguments['id']}]"
    if name in ("click",):
        return f"click [{arguments['id']}]"
    return f"{name} {arguments.get('name') or arguments.get('direction')}"


async def _act(browser: Browser, name: str, arguments: dict[str, Any],
               timeout: float) -> tuple[str, dict[str, Any]] | None:
    page, ms = browser.page, timeout * 1000
    if name == "key":
        await page.keyboard.press(arguments["name"])
        return None
    if name == "scroll":
        delta = SCROLL.get(arguments["direction"].strip().lower())
        if delta is None:
            return _refused(f"unknown direction {arguments['direction']!r} (up, down, left, right)")
        await page.mouse.wheel(*delta)
        return None
    ref = arguments["id"].strip().strip("[]")
    element = browser.element(ref)
    if not ref.isdigit() or await element.count() == 0:
        return _refused(f"no element [{ref}] on the page (use the numbers of the page view)")
    if name == "click":
        await element.first.click(timeout=ms)
        return None
    if await element.first.evaluate("e => e.tagName") == "SELECT":
        options = await element.first.evaluate("e => Array.from(e.options).map(o => o.text.trim())")
        if arguments["text"].strip() not in options:
            return _refused(f"[{ref}] has no option {arguments['text']!r} (options: {' | '.join(options)})")
        await element.first.select_option(label=arguments["text"].strip(), timeout=ms)
        return None
    await element.first.fill(arguments["text"], timeout=ms)
    return None
