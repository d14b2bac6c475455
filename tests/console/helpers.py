"""Small helpers for the console's browser tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page

from tests.console.stack import Stack


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll until ``pred()`` is truthy (a condition to reach, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {what}")
        time.sleep(0.1)


def status(stack: Stack, wid: str) -> dict[str, Any]:
    resp = stack.api("GET", f"/v1/containments/{wid}", "watcher")
    return resp.json() if resp.status_code == 200 else {}


def step(st: dict[str, Any], action: str) -> dict[str, Any] | None:
    return next((s for s in reversed(st.get("steps", [])) if s["action"] == action), None)


def pending(stack: Stack, wid: str, action: str) -> str:
    """Wait until the step ``action`` awaits approval; its step id."""
    def ready() -> str | None:
        s = step(status(stack, wid), action)
        return s["step_id"] if s and s["status"] == "awaiting_approval" else None
    sid: str = wait_for(ready, f"{action} awaiting approval on {wid}")
    return sid


def card(page: Page, step_id: str) -> Locator:
    return page.locator(f'[id="step-{step_id}"]')


def audit(stack: Stack, **query: Any) -> list[dict[str, Any]]:
    resp = stack.api("GET", "/v1/audit", "watcher", params={"limit": 1000, **query})
    records: list[dict[str, Any]] = resp.json()["records"]
    return records


def normalized(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity at the mock IdP with list order made irrelevant."""
    return {k: sorted(v, key=repr) if isinstance(v, list) else v for k, v in identity.items()}


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save ``name`` under $STANCH_CONSOLE_SHOTS (how docs/console/*.png are made)."""
    folder = os.environ.get("STANCH_CONSOLE_SHOTS")
    if folder:
        # caret="initial": hiding the caret injects a <style>, which the page's CSP refuses.
        page.screenshot(path=str(Path(folder) / name), full_page=full_page, caret="initial")


def assert_labelled(page: Page) -> None:
    """Every visible form control has a label a screen reader announces."""
    unlabelled = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')]
        .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML.slice(0, 120))""")
    assert not unlabelled, unlabelled
