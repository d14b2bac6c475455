"""A flaky, slow identity provider; and one that refuses for good."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.resilience.conftest import pool
from tests.resilience.stack import (
    SIZE,
    Stack,
    WebhookReceiver,
    check_contained,
    contained,
    report,
    sized,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(sized(500, 2400))]


def test_flaky_slow_provider_still_contains_everything_once(stack: Stack) -> None:
    idents = pool("flt")
    stack.create_identities(idents)
    latency = sized(300, 2000)
    # Full size: 30% of provider calls fail (429 with Retry-After, 500, 503 — a third each).
    # Small size: 15%. An attempt makes up to 6 calls and any failure retries the whole
    # activity with backoff to 30 s, so at 30% a revoke converges in minutes, not seconds.
    rate = 0.30 if SIZE == "full" else 0.15
    third = 1 - (1 - rate) ** (1 / 3)
    rules: list[dict[str, Any]] = [
        {"status": 429, "error_rate": third, "retry_after": 0.2},
        {"status": 500, "error_rate": third / (1 - third)},
        {"status": 503, "error_rate": third / (1 - third) ** 2},
        {"latency_ms": latency},
    ]
    stack.faults({"rules": rules, "seed": 30})
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as ex:
            wids = dict(ex.map(lambda i: (i, stack.post_alert(i, f"flt-alert-{i}")
                                          ["workflow_id"]), idents))
        stack.wait_for(wids.values(), contained, timeout=sized(400, 1800))
        injected = sum(r["applied"] for r in stack.faults({"rules": []})["rules"]
                       if "status" in r)
    finally:
        stack.faults(None)
    counts = check_contained(stack, wids)
    report("provider 429/5xx + latency", containments=counts["containments"],
           error_rate=rate, latency_ms=latency, injected_errors=injected,
           duplicate_effects=counts["duplicate_effects"], lost_alerts=counts["lost_alerts"],
           seconds=round(time.monotonic() - t0))


def test_permanent_403_fails_the_step_audits_and_escalates(
        stack: Stack, webhooks: WebhookReceiver) -> None:
    ident = pool("deny")[0]
    stack.create_identities([ident])
    stack.faults({"status": 403, "identity": ident, "methods": ["POST"]})
    try:
        wid = stack.post_alert(ident, f"deny-alert-{ident}")["workflow_id"]
        states = stack.wait_for([wid], lambda st: st.get("state") == "failed", timeout=60)
        rule = stack.faults({"rules": []})["rules"][0]
    finally:
        stack.faults(None)
    assert wid in states, stack.containment(wid)
    steps = states[wid]["steps"]
    assert [s["status"] for s in steps] == ["failed"] * 3, steps
    # Never retried: one refused write per step, and nothing changed at the provider.
    assert rule["applied"] == 3, rule
    assert stack.changes(ident) == []
    store = stack.audit()
    try:
        phases = stack.audit_phases(store, wid)
        failed = store.query(workflow_id=wid, types=["action.failed"], limit=100)
        assert not store.doubts()
    finally:
        store.close()
    assert len(phases) == 3 and all(p["intent"] == 1 and p["result"] == 1
                                    for p in phases.values()), phases
    assert len(failed) == 3 and all(r.data["status"] == 403 for r in failed)
    # A human hears about it: the notify activity's webhook, kind action_failed.
    end = time.monotonic() + 20
    while time.monotonic() < end and len([
            n for n in webhooks.of_kind("action_failed")
            if n["data"]["workflow_id"] == wid]) < 3:
        time.sleep(0.2)
    told = [n for n in webhooks.of_kind("action_failed") if n["data"]["workflow_id"] == wid]
    assert {n["data"]["step_id"] for n in told} == {s["step_id"] for s in steps}, told
    report("provider 403", containments=1, failed_steps=3, write_attempts=rule["applied"],
           escalations=len(told), duplicate_effects=0, lost_alerts=0)
