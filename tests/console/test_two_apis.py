"""Two API processes behind one address, in a real browser: a single sign-on begun on one
finishes on the other, the session works on both, and signing out on one ends it on both.

The second app is a second ``create_app`` on the stack's settings (the same audit
database and Temporal), on its own port; cookies are per host, not per port, so the
browser's cookies reach both, as they would through a load balancer."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from stanch.api.app import create_app
from tests.cli.server import serving
from tests.console.conftest import DESKTOP
from tests.console.stack import Stack, _playbooks

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_sign_in_on_one_api_finishes_on_the_other_and_logout_ends_both(
        stack: Stack, browser: Browser) -> None:
    httpx.put(f"{stack.issuer}/users/dana", json={
        "name": "Dana", "roles": ["approver"], "groups": ["soc-approvers"]},
        timeout=10).raise_for_status()
    one = stack.url
    with serving(create_app(stack.settings, playbooks=_playbooks())) as two:
        context = browser.new_context(viewport=DESKTOP)
        try:
            page = context.new_page()

            def to_two(route: Route) -> None:
                """The issuer's answer sends the browser back to one; the balancer (here,
                this rewrite) sends the callback to two."""
                answer = route.fetch(max_redirects=0)
                back = answer.headers.get("location", "")
                if route.request.method == "POST" and back.startswith(f"{one}/ui/auth/callback"):
                    route.fulfill(status=302, headers={"location": back.replace(one, two)})
                else:
                    route.fulfill(response=answer)
            page.route(f"{stack.issuer}/oauth2/authorize**", to_two)
            page.goto(f"{one}/ui/auth/start")
            page.get_by_placeholder("sub").fill("dana")
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(f"{two}/ui/")
            expect(page.locator("header.top")).to_contain_text("dana")
            for base in (one, two):
                page.goto(f"{base}/ui/containments")
                expect(page.locator("header.top")).to_contain_text("dana")
            page.goto(f"{one}/ui/")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{one}/ui/login")
            page.goto(f"{two}/ui/")
            page.wait_for_url(f"{two}/ui/login")
        finally:
            context.close()
