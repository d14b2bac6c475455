"""Browser fixtures: Debian's chromium through Playwright (nothing downloaded), the stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.console.stack import Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/sysdeps.sh (Debian's chromium)")
    return {"executable_path": CHROMIUM, "headless": True,
            "args": ["--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run"]}


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Package-scoped, not the plugin's session one: while Playwright's sync API lives it
    keeps an event loop running in this thread, and every asyncio test collected after
    this package would fail to start its own."""
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser(playwright: Playwright, browser_type_launch_args: dict[str, Any]
            ) -> Iterator[Browser]:
    launched = playwright.chromium.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("console")) as s:
        yield s


SignIn = Callable[..., Page]


@pytest.fixture()
def sign_in(browser: Browser, stack: Stack) -> Iterator[SignIn]:
    """``sign_in("approver1")``: a fresh browser context signed in with a one-time link."""
    contexts = []
    complaints: list[str] = []

    def open_as(who: str, viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: complaints.append(msg.text)
                if msg.type == "error" else None)
        page.on("pageerror", lambda err: complaints.append(str(err)))
        page.goto(stack.link(who))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{stack.url}/ui/")
        return page

    yield open_as
    for c in contexts:
        c.close()
    # No page broke its Content-Security-Policy or threw (a 403 on a test's own forged
    # POST is a response, not a page error).
    assert not [c for c in complaints if "Content Security Policy" in c
                or "Refused to" in c or "Error" in c], complaints
