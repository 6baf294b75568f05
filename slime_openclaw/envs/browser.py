"""A headless Chromium per episode, driven by Playwright: open a page, read it, act on it.

``Browser.start()`` launches Debian's ``/usr/bin/chromium`` (never a downloaded build)
with a fresh profile in a temporary directory, headless, without GPU, QUIC, sync, first
run or background networking. A route handler lets only ``file://`` and loopback
(``127.0.0.1``, ``localhost``, ``[::1]``) requests through; every other request is
aborted. ``close()`` closes the browser, stops the Playwright driver, checks that no
process of the profile is left and removes the directory.

The text view (``view()``) lists the visible elements that matter to an agent, one per
line, indented by nesting, each with a stable number ``[n]`` kept in a ``data-oc-id``
attribute (a page may set its own): tag, role or input type, text (the whole text of an
element with text of its own, when short, so a sentence keeps its inline parts), value, state
(checked, selected, disabled) and the options of a ``<select>``. Scripts, styles and hidden
elements never appear, so nothing a page keeps in JavaScript reaches the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
VIEWPORT = {"width": 800, "height": 600}

VIEW_JS = r"""
() => {
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'META', 'LINK', 'OPTION']);
  const ACTIVE = new Set(['A', 'BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'LABEL', 'SUMMARY']);
  let next = window.__ocNext || 0;
  if (!next) {
    for (const el of document.querySelectorAll('[data-oc-id]')) next = Math.max(next, +el.dataset.ocId || 0);
    next += 1;
  }
  const lines = [];
  const clean = (s) => s.replace(/\s+/g, ' ').trim();
  const visible = (el) => {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 || box.height > 0 || el.children.length > 0;
  };
  const ownText = (el) => clean(Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join(' '));
  const walk = (el, depth) => {
    if (SKIP.has(el.tagName) || !visible(el)) return;
    const own = el.tagName === 'SELECT' || el.tagName === 'TEXTAREA' ? '' : ownText(el);
    const whole = own ? clean(el.textContent) : '';
    const text = whole && whole.length <= 200 ? whole : own;  // a sentence keeps its inline parts
    const shown = ACTIVE.has(el.tagName) || el.onclick || el.hasAttribute('role') || el.hasAttribute('tabindex')
      || el.isContentEditable || text;
    if (shown) {
      if (!el.dataset.ocId) el.dataset.ocId = String(next++);
      let line = '  '.repeat(depth) + '[' + el.dataset.ocId + '] ' + el.tagName.toLowerCase();
      const kind = el.getAttribute('role') || (el.tagName === 'INPUT' ? (el.type || 'text') : '');
      if (kind) line += ' ' + kind;
      if (text) line += ' ' + JSON.stringify(text);
      if (el.placeholder) line += ' placeholder=' + JSON.stringify(el.placeholder);
      if ((el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit'].includes(el.type)) || el.tagName === 'TEXTAREA')
        line += ' value=' + JSON.stringify(el.value);
      if (el.tagName === 'SELECT') {
        line += ' value=' + JSON.stringify(el.selectedIndex >= 0 ? el.options[el.selectedIndex].text : '');
        line += ' options: ' + Array.from(el.options).map(o => clean(o.text)).join(' | ');
      }
      if (el.checked) line += ' checked';
      if (el.disabled) line += ' disabled';
      if (document.activeElement === el) line += ' focused';
      lines.push(line);
      depth += 1;
    }
    for (const child of el.children) walk(child, depth);
  };
  if (document.body) walk(document.body, 0);
  window.__ocNext = next;
  return lines.join('\n');
}
"""


class BrowserError(RuntimeError):
    """The browser cannot run here (Chromium or Playwright missing) or did not start."""


def allowed(url: str) -> bool:
    """Only ``file://``, ``data:``/``about:`` and loopback ``http(s)`` requests are let through."""
    parsed = urlparse(url)
    if parsed.scheme in ("file", "data", "about", "blob"):
        return True
    return parsed.scheme in ("http", "https", "ws", "wss") and (parsed.hostname or "") in LOOPBACK


class Browser:
    """One headless Chromium with a fresh profile; one page."""

    def __init__(self, *, executable: str = CHROMIUM, timeout: float = 5.0):
        self.executable, self.timeout = executable, timeout
        self.root: Path | None = None
        self.page: Any = None
        self.blocked: list[str] = []
        self._playwright: Any = None
        self._context: Any = None

    @property
    def profile(self) -> Path:
        """The profile directory of this browser (fresh per ``start``)."""
        assert self.root is not None
        return self.root / "profile"

    async def start(self) -> None:
        """Launch Chromium with a fresh profile and open a blank page."""
        if not os.access(self.executable, os.X_OK):
            raise BrowserError(f"{self.executable} not found: install Debian's chromium (make chromium)")
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise BrowserError(f"playwright is not installed ({exc}): pip install 'slime-openclaw[gui]'") from None
        self.root = Path(tempfile.mkdtemp(prefix="gui-episode-"))
        try:
            self._playwright = await async_playwright().start()
            self._context = await self._playwright.chromium.launch_persistent_context(
                str(self.profile), executable_path=self.executable, headless=True, args=FLAGS,
                viewport=VIEWPORT, env={**os.environ, "TMPDIR": str(self.root)}, timeout=60_000)
            await self._context.route("**/*", self._route)
            self.page = self._context.pages[0] if self._context.pages else await self._context.new_page()
            self.page.set_default_timeout(self.timeout * 1000)
        except Exception as exc:
            await self.close()
            raise BrowserError(f"chromium did not start: {exc}") from exc

    async def _route(self, route: Any) -> None:
        if allowed(route.request.url):
            await route.continue_()
        else:
            self.blocked.append(route.request.url)
            await route.abort()

    async def goto(self, url: str) -> None:
        """Open ``url`` (``file://`` or loopback) and wait for it to load."""
        if not allowed(url):
            raise BrowserError(f"only file:// and loopback pages may be opened, not {url!r}")
        await self.page.goto(url, wait_until="load", timeout=30_000)

    async def view(self) -> str:
        """The page's text view (numbered elements, one per line)."""
        return str(await asyncio.wait_for(self.page.evaluate(VIEW_JS), max(self.timeout, 10.0)))

    async def evaluate(self, script: str) -> Any:
        """Run ``script`` in the page and return its value (a hung page raises ``TimeoutError``)."""
        return await asyncio.wait_for(self.page.evaluate(script), max(self.timeout, 10.0))

    async def screenshot(self, name: str) -> str:
        """A PNG of the viewport in the episode directory; returns its path."""
        assert self.root is not None
        path = self.root / name
        await self.page.screenshot(path=str(path), timeout=max(self.timeout, 10.0) * 1000)
        return str(path)

    def element(self, ref: str) -> Any:
        """The locator of element ``[ref]`` of the text view."""
        return self.page.locator(f'[data-oc-id="{ref}"]')

    async def close(self) -> None:
        """Close the browser and the driver, kill any leftover of the profile, remove the directory."""
        context, playwright, root = self._context, self._playwright, self.root
        self._context = self._playwright = self.page = self.root = None
        for closing in (context.close if context else None, playwright.stop if playwright else None):
            if closing is not None:
                with contextlib.suppress(Exception):  # a hung browser: its processes are killed below
                    await asyncio.wait_for(closing(), timeout=15)
        if root is not None:
            await remove_profile(root)


async def remove_profile(root: Path, deadline_s: float = 10.0) -> None:
    """Kill what is left of the profile's processes and remove ``root``, retrying while a
    dying browser still writes into it (until ``deadline_s``)."""
    deadline = time.monotonic() + deadline_s
    while True:
        kill_profile_processes(root)
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


def kill_profile_processes(root: Path) -> list[int]:
    """SIGKILL every process whose command line names ``root`` (a browser that outlived close)."""
    killed = []
    needle = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except OSError:
                pass
    return killed
