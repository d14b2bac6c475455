"""Issue 8: the worker dies after the provider write and before the audit result.

The mock IdP delays its answer to every write for this identity (the write is done, the
reply is late), so once the write shows in its change log the activity is still waiting for
that reply: kill -9 then. The retry on a new worker must
find the intent, see the earlier attempt's effect in the change log, and record exactly one
result — ``applied``, with the true before-state and a full undo — and write nothing twice.
"""

from __future__ import annotations

import time

import pytest

from tests.resilience.conftest import pool
from tests.resilience.stack import Stack, check_contained, contained, report, sized

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(sized(180, 300))]


def test_kill_between_provider_write_and_audit_result(stack: Stack) -> None:
    ident = pool("crash")[0]
    stack.create_identities([ident])
    stack.faults({"reply_latency_ms": 4000, "identity": ident, "methods": ["POST"]})
    t0 = time.monotonic()
    try:
        wid = stack.post_alert(ident, f"crash-alert-{ident}")["workflow_id"]
        writes: list[dict] = []  # type: ignore[type-arg]
        end = time.monotonic() + 60
        while not writes and time.monotonic() < end:
            writes = [c for c in stack.changes(ident) if c["op"] == "group.remove"]
            time.sleep(0.05)
        assert writes, "the reduce_scope write never reached the provider"
        stack.kill_worker()
    finally:
        stack.faults(None)
    action_id = writes[0]["idempotency_key"]
    store = stack.audit()
    try:
        assert store.find(f"{action_id}:intent") is not None
        assert store.find(f"{action_id}:result") is None, "the kill came too late"
    finally:
        store.close()

    stack.start_worker()
    states = stack.wait_for([wid], contained, timeout=120)
    assert wid in states, stack.containment(wid)
    counts = check_contained(stack, {ident: wid})  # one change per effect, one result each
    step = states[wid]["steps"][0]
    assert step["action"] == "reduce_scope" and step["result"]["action_id"] == action_id
    assert step["result"]["status"] == "applied"
    assert sorted(g["name"] for g in step["undo"]["params"]["groups"]) == [
        "break-glass-admins", "prod-admins"]
    assert {g["name"] for g in step["result"]["before"]["groups"]} >= {"prod-admins"}
    report("crash between write and audit result", containments=1, kills=1, restarts=1,
           intents=1, results=1, provider_changes=len(writes),
           duplicate_effects=counts["duplicate_effects"], lost_alerts=counts["lost_alerts"],
           seconds=round(time.monotonic() - t0))
