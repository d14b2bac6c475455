"""On-call in a real browser: contain by hand (search, plan first), roll back; a viewer sees
no buttons; the guards on sessions, links, headers and the vendored htmx."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from stanch.console.sessions import mint_login_link
from tests.console.conftest import PHONE, SignIn
from tests.console.helpers import (
    assert_labelled,
    audit,
    card,
    normalized,
    pending,
    screenshot,
    status,
    wait_for,
)
from tests.console.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]


def test_oncall_contains_by_hand_then_rolls_back_to_the_state_before(
        stack: Stack, sign_in: SignIn) -> None:
    before = stack.identity("sa-deploy")
    page = sign_in("oncall")
    page.get_by_role("link", name="Contain", exact=True).click()
    page.wait_for_url(f"{stack.url}/ui/contain")
    page.wait_for_load_state("load")  # htmx (a deferred script) listens from here on
    page.get_by_label(re.compile("^Identity")).fill("AKIAMOCKDEPLOY0001")
    expect(page.locator("#matches")).to_contain_text("Deploy pipeline")
    page.get_by_label("Highest rung").select_option("reduce_scope")
    page.get_by_label(re.compile("^Reason")).fill("key seen in a public repo")
    page.get_by_label("Ticket").fill("INC-42")
    assert_labelled(page)
    page.get_by_role("button", name="Show the plan").click()
    plan = page.locator("section", has=page.locator("#h-plan"))
    expect(plan).to_contain_text("Deploy pipeline (mock:sa-deploy)")
    expect(plan).to_contain_text("reduce_scope")
    # The plan preview shows the same declarations the containment page will.
    expect(plan).to_contain_text("Rollback restores")
    expect(plan).to_contain_text("the memberships, each with its privileged flag")
    screenshot(page, "contain-plan.png")
    assert normalized(stack.identity("sa-deploy")) == normalized(before)  # nothing yet

    page.get_by_role("button", name="Contain Deploy pipeline").click()
    page.wait_for_url(re.compile(r".*/ui/c/containment-[0-9a-f]{24}$"))
    wid = page.url.rsplit("/", 1)[1]
    expect(page.locator(".flash.ok")).to_contain_text("containment of mock:sa-deploy started")
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("contained by hand")
    expect(timeline).to_contain_text("applied reduce_scope")
    expect(page.locator(".timeline table.diff")).to_contain_text("prod-deployers")
    expect(page.locator(".ladder li.current")).to_contain_text("reduce_scope")
    assert normalized(stack.identity("sa-deploy")) != normalized(before)
    assert_labelled(page)

    page.get_by_label(re.compile("^Roll back everything")).fill("false alarm: test key")
    page.get_by_role("button", name="Roll back").click()
    expect(page.locator(".flash.ok")).to_contain_text("rolled back: reduce_scope reverted")
    expect(page.locator(".state")).to_have_text("rolled_back")
    assert normalized(stack.identity("sa-deploy")) == normalized(before)
    types = [r["type"] for r in audit(stack, workflow_id=wid)]
    for kind in ("containment.manual", "action.result", "action.reverted",
                 "containment.rollback"):
        assert kind in types, types
    rollback = audit(stack, workflow_id=wid, type="containment.rollback")
    assert [(r["actor"], r["reason"]) for r in rollback] == [("oncall",
                                                               "false alarm: test key")]


def test_viewer_sees_everything_and_no_buttons(stack: Stack, sign_in: SignIn) -> None:
    resp = stack.api("POST", "/v1/containments", "oncall", json={
        "identity": "mock:app-reporting", "level": "rotate", "reason": "vendor breach"})
    assert resp.status_code == 202, resp.text
    wid = resp.json()["workflow_id"]
    # Ending the app's sessions loses them and its playbook does not accept that: the step
    # waits for a human, and says before it runs what rollback restores and what not.
    reauth = pending(stack, wid, "force_reauth")
    approver = sign_in("approver1")
    item = card(approver, reauth)
    expect(item.locator(".badge.danger", has_text="rollback")).to_have_text(
        "rollback cannot restore: sessions")
    for fact in ("revokes every session", "Cannot restore",
                 "sessions and tokens issued before the action: their holders sign in again",
                 "Waits because", "sessions"):
        expect(item).to_contain_text(fact)
    expect(item.locator("dd.gate")).to_contain_text("sessions")
    expect(item.locator("form")).to_have_count(1)
    screenshot(approver, "inbox.png")
    approver.goto(f"{stack.url}/ui/c/{wid}")
    row = approver.locator("tr", has=approver.locator(f"text={reauth}"))
    expect(row).to_contain_text("awaiting approval")
    expect(row.locator("dd.lost")).to_contain_text("sessions and tokens issued before")
    applied = approver.locator("tr", has=approver.get_by_text("reduce_scope", exact=True))
    expect(applied).to_contain_text("the memberships, each with its privileged flag")
    screenshot(approver, "containment.png")
    approver.set_viewport_size(PHONE)
    assert approver.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(approver, "containment-phone.png")
    page = sign_in("watcher")
    expect(card(page, reauth)).to_contain_text("lacks the approver role")
    expect(card(page, reauth)).to_contain_text("Cannot restore")
    for path in ("/ui/", f"/ui/c/{wid}", "/ui/containments", "/ui/contain",
                 "/ui/elevations", "/ui/audit"):
        page.goto(f"{stack.url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        posts = page.locator("form[method=post]")
        expect(posts).to_have_count(1)  # signing out
        names = {b.inner_text().strip() for b in page.get_by_role("button").all()}
        assert names <= {"Sign out", "Filter"}, (path, names)
        assert page.locator("textarea").count() == 0, path
    # The audit tail: chain status, a filter, the export.
    page.goto(f"{stack.url}/ui/audit?type=containment.manual")
    expect(page.locator(".chain")).to_contain_text("Chain verified up to record")
    expect(page.locator("table.audit tbody")).to_contain_text("containment.manual")
    expect(page.locator("table.audit tbody")).not_to_contain_text("action.result")
    exported = page.request.get(f"{stack.url}/ui/audit/export?type=containment.manual")
    lines = [json.loads(x) for x in exported.text().splitlines()]
    assert lines and {x["type"] for x in lines} == {"containment.manual"}
    assert "attachment" in exported.headers["content-disposition"]
    # A viewer's hand-made decision, with a valid CSRF token, is still refused.
    page.goto(f"{stack.url}/ui/")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    page.request.post(f"{stack.url}/ui/c/{wid}/decide", form={
        "csrf": token or "", "step": reauth, "verdict": "approve", "comment": "sneaky"})
    assert status(stack, wid)["pending_approvals"][0]["approvals"] == 0


def test_sessions_links_headers_and_phone_width(stack: Stack, sign_in: SignIn) -> None:
    # Not signed in: every page leads to sign-in, and no data.
    anon = httpx.get(f"{stack.url}/ui/containments", follow_redirects=False, timeout=10)
    assert anon.status_code == 303 and anon.headers["location"] == "/ui/login"
    login = httpx.get(f"{stack.url}/ui/login", timeout=10)
    csp = login.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "<script>" not in login.text  # every script is a file under /ui/static

    # A link works once; an expired one never.
    link = stack.link("approver1")
    token = link.split("token=")[1]
    first = httpx.post(f"{stack.url}/ui/login/link", data={"token": token}, timeout=10)
    assert first.status_code == 200 and "stanch_session" in first.headers["set-cookie"]
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    again = httpx.post(f"{stack.url}/ui/login/link", data={"token": token}, timeout=10)
    assert again.status_code == 400 and "stanch_session" not in again.headers.get(
        "set-cookie", "")
    old = mint_login_link(stack.settings.state_dir, "approver1", lifetime=-1)
    assert httpx.post(f"{stack.url}/ui/login/link", data={"token": old},
                      timeout=10).status_code == 400

    # The vendored htmx is the one its README pins.
    static = REPO / "stanch" / "console" / "static"
    digest = hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest()
    assert digest in (static / "README.md").read_text()

    # Phone width, signed in; then sign out ends the session for good.
    page = sign_in("approver2", viewport=PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    expect(page.get_by_role("link", name="Containments")).to_be_visible()
    screenshot(page, "inbox-phone.png", full_page=False)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{stack.url}/ui/login")
    page.goto(f"{stack.url}/ui/")
    page.wait_for_url(f"{stack.url}/ui/login")
    assert "token" not in page.url


def test_elevation_requested_approved_and_revoked_from_the_console(
        stack: Stack, sign_in: SignIn) -> None:
    # Alice starts without prod-admins whatever ran before (the seed gives it to her): the
    # grant must be the elevation's, and revoking it must take it back.
    httpx.post(f"{stack.mock_idp}/identities/u-alice/groups/remove",
               json={"groups": ["prod-admins"]}, timeout=10).raise_for_status()
    oncall = sign_in("oncall")
    oncall.get_by_role("link", name="Elevations").click()
    oncall.get_by_label(re.compile("^For")).fill("mock:u-alice")
    oncall.get_by_label(re.compile("^Scopes")).fill("prod-admins")
    oncall.get_by_label("Duration").fill("30m")
    oncall.get_by_label("Reason").last.fill("hotfix for INC-9")
    oncall.get_by_role("button", name="Request").click()
    expect(oncall.locator(".flash.ok")).to_contain_text("requested for mock:u-alice")
    wid = re.search(r"elevation-[0-9a-f]{24}", oncall.locator(".flash.ok").inner_text())
    assert wid is not None
    row = 'tr:has-text("mock:u-alice")'

    approver = sign_in("approver1")
    approver.goto(f"{stack.url}/ui/elevations")
    wait_for(lambda: approver.reload() or approver.locator(row).filter(
        has_text="awaiting_approval").count(), "the request listed as awaiting approval")
    line = approver.locator(row).filter(has_text="awaiting_approval")
    line.get_by_label("Comment").fill("INC-9 is real")
    line.get_by_role("button", name="Approve").click()
    expect(approver.locator(".flash.ok")).to_contain_text("approve: done")

    def groups() -> set[str]:
        return {g["name"] for g in stack.identity("u-alice")["groups"]}
    wait_for(lambda: "prod-admins" in groups(), "prod-admins granted to Alice")
    # The group lands at the IdP a moment before the workflow records the grant as active.
    wait_for(lambda: oncall.reload() or oncall.locator(row).filter(has_text="active").count(),
             "the elevation listed as active")
    assert_labelled(oncall)
    active = oncall.locator(row).filter(has_text="active")
    expect(active.locator(".countdown")).to_contain_text("left")
    active.get_by_label("Reason").last.fill("hotfix shipped")
    active.get_by_role("button", name="Revoke now").click()
    expect(oncall.locator(".flash.ok")).to_contain_text("revoke: done")
    wait_for(lambda: "prod-admins" not in groups(), "prod-admins taken back from Alice")
    types = [r["type"] for r in audit(stack, workflow_id=wid.group(0))]
    assert "elevation.granted" in types and "elevation.revoked" in types, types


def test_break_glass_then_confirm_and_acknowledge_the_review(
        stack: Stack, sign_in: SignIn) -> None:
    oncall = sign_in("oncall")
    oncall.goto(f"{stack.url}/ui/contain")
    oncall.wait_for_load_state("load")
    oncall.get_by_label(re.compile("^Identity")).fill("ci-token")
    oncall.get_by_label("Highest rung").select_option("rotate")
    oncall.get_by_label(re.compile("^Reason")).fill("token in a public gist")
    expect(oncall.locator(".breakglass .warning")).to_contain_text("now")
    oncall.get_by_label("Break glass").check()
    oncall.get_by_role("button", name="Show the plan").click()
    expect(oncall.locator("#h-plan")).to_contain_text("CI token (mock:tok-ci)")
    oncall.get_by_role("button", name="Break glass and contain").click()
    oncall.wait_for_url(re.compile(r".*/ui/c/containment-[0-9a-f]{24}$"))
    wid = oncall.url.rsplit("/", 1)[1]

    def applied() -> bool:
        steps = status(stack, wid).get("steps", [])
        return {s["action"]: s["status"] for s in steps} == {
            "reduce_scope": "applied", "rotate": "applied"}
    wait_for(applied, "both steps applied without waiting for approval")
    reviews = oncall.locator("section", has=oncall.locator("#h-reviews"))
    expect(reviews).to_contain_text("on manual-token:1:rotate")
    expect(reviews.get_by_role("button", name="Acknowledge")).to_have_count(0)  # responder

    oncall.get_by_label("Reason", exact=True).first.fill("scope cut stays until rotated")
    oncall.get_by_role("button", name="Keep reduce_scope (confirm)").click()
    expect(oncall.locator(".flash.ok")).to_contain_text("confirmed manual-token:0:reduce_scope")

    approver = sign_in("approver1")
    approver.goto(f"{stack.url}/ui/c/{wid}")
    reviews = approver.locator("section", has=approver.locator("#h-reviews"))
    reviews.get_by_label("Comment").fill("gist was real, rotation right")
    reviews.get_by_role("button", name="Acknowledge").click()
    expect(approver.locator(".flash.ok")).to_contain_text("acknowledged")
    expect(approver.locator("#h-reviews ~ .card")).to_contain_text(
        "acknowledged by approver1")
    types = {r["type"]: r for r in audit(stack, workflow_id=wid)}
    assert types["break_glass"]["data"]["break_glass_reason"] == (
        "a leaked token is used within minutes")
    assert types["containment.confirmed"]["actor"] == "oncall"
    assert types["review.acknowledged"]["actor"] == "approver1"
