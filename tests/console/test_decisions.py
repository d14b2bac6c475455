"""Approvers in a real browser: sign-in at a real OpenID provider, context, decisions,
people who may not decide, CSRF, quorum of two, live updates and a lost race."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.console.conftest import DESKTOP, SignIn
from tests.console.helpers import (
    assert_labelled,
    audit,
    card,
    pending,
    screenshot,
    status,
    step,
    wait_for,
)
from tests.console.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_approver_signs_in_with_oidc_sees_context_and_approves(
        stack: Stack, sign_in: SignIn, browser: Browser) -> None:
    before = stack.identity("u-bob")
    resp = stack.api("POST", "/v1/containments", "lead", json={
        "identity": "bob@example.com", "level": "rotate", "reason": "phished on a call",
        "ticket": "INC-7"})
    assert resp.status_code == 202, resp.text
    wid = resp.json()["workflow_id"]
    rotate = pending(stack, wid, "rotate")

    # Who may not decide sees the step, the reason, and no form.
    for who, reason in (("outsider", "not an approver: outsider"),
                        ("lead", "self-approval refused"),
                        ("bob", "cannot decide on itself")):
        page = sign_in(who)
        item = card(page, rotate)
        expect(item).to_contain_text(reason)
        expect(item.locator("form")).to_have_count(0)
        expect(page.locator("#h-mine")).to_contain_text("0")

    # Posted by hand anyway (with the session's own CSRF token), the outsider's vote is
    # refused by the workflow and audited exactly as the same attempt through the API.
    page = sign_in("outsider")
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    page.request.post(f"{stack.url}/ui/c/{wid}/decide", form={
        "csrf": token, "step": rotate, "verdict": "approve", "comment": "let me"},
        max_redirects=0)
    page.goto(f"{stack.url}/ui/")
    expect(page.locator(".flash.error")).to_contain_text("refused: not an approver: outsider")
    by_api = stack.api("POST", f"/v1/containments/{wid}/decisions", "outsider",
                       json={"step": rotate, "verdict": "approve", "comment": "let me"})
    assert by_api.status_code == 403
    refused = audit(stack, workflow_id=wid, type="decision.refused")
    assert [r["data"]["channel"] for r in refused] == ["console", "api"]
    same = [{k: v for k, v in r.items() if k not in ("seq", "at", "hash", "prev_hash")}
            | {"data": {k: v for k, v in r["data"].items() if k != "channel"}}
            for r in refused]
    assert same[0] == same[1], same

    # A form posted without its CSRF token (or with another) is refused; nothing changes.
    page = sign_in("approver1")
    expect(card(page, rotate).locator("form")).to_have_count(1)
    for token in (None, "forged-token"):
        form = {"step": rotate, "verdict": "approve", "comment": "no token here"}
        if token:
            form["csrf"] = token
        answer = page.request.post(f"{stack.url}/ui/c/{wid}/decide", form=form,
                                   max_redirects=0)
        assert answer.status == 403, answer.text()
    assert step(status(stack, wid), "rotate")["approval"]["votes"] == []
    assert not [r for r in audit(stack, workflow_id=wid, type="decision.recorded")]
    assert len(audit(stack, workflow_id=wid, type="decision.refused")) == 2  # as before

    # Carol signs in at the OpenID provider (authorization code + PKCE) and approves.
    httpx.put(f"{stack.issuer}/users/carol", json={
        "name": "Carol", "roles": ["approver"], "groups": ["soc-approvers"]},
        timeout=10).raise_for_status()
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/")
        page.wait_for_url(f"{stack.url}/ui/login")
        page.get_by_role("link", name="Sign in with single sign-on").click()
        page.get_by_placeholder("sub").fill("carol")
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{stack.url}/ui/")
        assert "code=" not in page.url and "token" not in page.url
        item = card(page, rotate)
        for fact in ("Bob Example", "mock:u-bob", "owner bob", "prod", "criticality medium",
                     "phished on a call", "severity high", "0 of 1",
                     "the old credential, active again", "Replace the credentials", "left"):
            expect(item).to_contain_text(fact)
        expect(page.locator("header.top")).to_contain_text("carol")
        assert_labelled(page)
        item.get_by_label("Comment (required)").fill("called Bob, he did not log in")
        item.get_by_role("button", name="Approve").click()
        expect(page.locator(".flash.ok")).to_contain_text(f"approve recorded on {rotate}")
        expect(page.locator(".flash.ok")).to_contain_text("1 of 1")

        def rotated() -> bool:
            creds = stack.identity("u-bob")["credentials"]
            return creds != before["credentials"]
        wait_for(rotated, "Bob's credentials rotated at the mock IdP")
        page.goto(f"{stack.url}/ui/c/{wid}")
        timeline = page.locator(".timeline")
        expect(timeline).to_contain_text("applied rotate")
        expect(timeline).to_contain_text("decision refused")
        expect(timeline).to_contain_text("approve on rotate: 1 approval(s), approved, "
                                         "via console")
        expect(page.locator(".ladder li.current")).to_contain_text("rotate")
        # force_reauth ran at once (its playbook accepts the loss) and says what it lost.
        reauth = page.locator("tr", has=page.get_by_text("force_reauth", exact=True))
        expect(reauth.locator(".badge.danger", has_text="rollback")).to_have_text(
            "rollback cannot restore: sessions")
        expect(reauth.locator("dd.lost")).to_contain_text("their holders sign in again")
        screenshot(page, "timeline.png")
    finally:
        context.close()
    decided = [r for r in audit(stack, workflow_id=wid, type="decision.recorded")]
    assert [(r["actor"], r["reason"], r["data"]["channel"], r["data"]["verdict"])
            for r in decided] == [("carol", "called Bob, he did not log in", "console",
                                   "approve")]


def test_quorum_of_two_live_updates_and_a_lost_race(stack: Stack, sign_in: SignIn) -> None:
    resp = stack.api("POST", "/v1/containments", "lead", json={
        "identity": "alice@example.com", "level": "revoke", "reason": "token theft"})
    assert resp.status_code == 202, resp.text
    wid = resp.json()["workflow_id"]
    rotate = pending(stack, wid, "rotate")
    first, second = sign_in("approver1"), sign_in("approver2")
    expect(card(second, rotate)).to_contain_text("0 of 2")

    item = card(first, rotate)
    item.get_by_label("Comment (required)").fill("matches the EDR alert")
    item.get_by_role("button", name="Approve").click()
    expect(first.locator(".flash.ok")).to_contain_text("1 of 2 approvals")
    # The other approver's inbox changes by itself (no reload).
    expect(card(second, rotate)).to_contain_text("1 of 2")
    expect(card(second, rotate)).to_contain_text("approver1 approved")

    # The second approver decides with the keyboard only: comment, Tab, Enter on Approve.
    item = card(second, rotate)
    item.get_by_label("Comment (required)").focus()
    second.keyboard.type("agreed, rotate")
    second.keyboard.press("Tab")
    expect(item.get_by_role("button", name="Approve")).to_be_focused()
    second.keyboard.press("Enter")
    expect(second.locator(".flash.ok")).to_contain_text("2 of 2 approvals, step is approved")

    revoke = pending(stack, wid, "revoke")
    for page in (first, second):
        expect(card(page, revoke).get_by_role("button", name="Approve")).to_be_visible()
        card(page, revoke).get_by_label("Comment (required)").fill("disable her now")
    # Both submit before either page reloads: otherwise the second inbox's live update may
    # remove the decided card before its Deny is clicked.
    card(first, revoke).get_by_role("button", name="Approve").click(no_wait_after=True)
    card(second, revoke).get_by_role("button", name="Deny").click()
    flashes = {}
    for name, page in (("approver1", first), ("approver2", second)):
        flash = page.locator(".flash").first
        expect(flash).to_be_visible()
        flashes[name] = flash.inner_text()
    won = [n for n, text in flashes.items() if "recorded on" in text]
    assert len(won) == 1, flashes
    lost = next(n for n in flashes if n not in won)
    assert re.search(rf"already decided by {won[0]} at \d\d:\d\d UTC", flashes[lost]), flashes
    votes = step(status(stack, wid), "revoke")["approval"]["votes"]
    assert [v["principal"] for v in votes] == won
    refused = audit(stack, workflow_id=wid, type="decision.refused")
    assert [(r["actor"], r["data"]["channel"]) for r in refused] == [(lost, "console")]
