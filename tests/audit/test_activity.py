"""The audit activities append through the store and never duplicate on retry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.audit import AuditActivities
from stanch.audit import SqliteAuditStore
from stanch.models import AuditType

from .helpers import event


async def test_record_audit_is_idempotent_across_retries(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    acts = AuditActivities(store)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_id="7")

    keyed = event(1, type=AuditType.action_intent, action_id="a1", phase="intent",
                  dedup_key="a1:intent")
    assert await env.run(acts.record_audit, keyed) == 1
    assert await env.run(acts.record_audit, keyed) == 1  # retried: same record

    unkeyed = event(2, type=AuditType.plan_chosen)
    first = await env.run(acts.record_audit, unkeyed)
    again = await env.run(acts.record_audit, unkeyed)  # same activity id: a retry
    assert first == again == 2

    seqs = await env.run(acts.record_audit_batch, [event(3), event(4)])
    assert seqs == [3, 4]
    assert await env.run(acts.record_audit_batch, [event(3), event(4)]) == [3, 4]

    assert store.head()[0] == 4
    assert store.verify().ok
    store.close()


def test_activity_names() -> None:
    from temporalio.activity import _Definition

    acts = AuditActivities(store=None)  # type: ignore[arg-type]
    names = {d.name for d in (_Definition.must_from_callable(acts.record_audit),
                              _Definition.must_from_callable(acts.record_audit_batch))}
    assert names == {"record_audit", "record_audit_batch"}
