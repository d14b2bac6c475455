"""The chain: append, idempotency, queries, doubts — the same on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from stanch.audit import GENESIS_HASH, AuditStore
from stanch.audit.base import canonical_json
from stanch.models import AuditRecord, AuditType

from .helpers import T0, event


def test_append_chains_records(store: AuditStore) -> None:
    recs = [store.append(event(i)) for i in range(3)]
    assert [r.seq for r in recs] == [1, 2, 3]
    assert recs[0].prev_hash == GENESIS_HASH
    assert recs[1].prev_hash == recs[0].hash and recs[2].prev_hash == recs[1].hash
    # The hash covers the canonical JSON of every field but itself.
    body = recs[1].model_dump(mode="json", exclude={"hash"})
    body["at"] = "2025-03-01T12:00:01.000000Z"
    assert hashlib.sha256(canonical_json(body).encode()).hexdigest() == recs[1].hash
    assert store.get(2) == recs[1]
    assert store.get(99) is None
    assert store.head() == (3, recs[2].hash)
    report = store.verify()
    assert report.ok and report.records == 3 and report.head_seq == 3


def test_record_keeps_every_field(store: AuditStore) -> None:
    for i, t in enumerate(AuditType):
        rec = store.append(event(i, type=t, actor="alice", subject="aws_iam:AIDA1",
                                 workflow_id="containment-x", alert_ids=["a1", "a2"],
                                 reason="why", ticket="INC-7", action_id=f"act{i}",
                                 phase="intent", data={"k": [1, {"x": None}]}))
        back = store.get(rec.seq)
        assert back == rec
        assert isinstance(back, AuditRecord)
        assert (back.type, back.actor, back.subject, back.workflow_id, back.alert_ids,
                back.reason, back.ticket) == (t, "alice", "aws_iam:AIDA1", "containment-x",
                                              ["a1", "a2"], "why", "INC-7")
    assert store.verify().ok


def test_dedup_key_is_idempotent(store: AuditStore) -> None:
    first = store.append(event(1, action_id="a1", phase="intent", dedup_key="a1:intent",
                               type=AuditType.action_intent))
    again = store.append(event(2, action_id="a1", phase="intent", dedup_key="a1:intent",
                               type=AuditType.action_intent, reason="retry"))
    assert again == first
    assert store.find("a1:intent") == first
    assert store.find("nope") is None
    assert store.head()[0] == 1
    assert store.verify().ok


def test_append_many_is_one_batch_and_dedups_within_it(store: AuditStore) -> None:
    store.append(event(0, dedup_key="k0"))
    recs = store.append_many([event(1, dedup_key="k1"), event(2), event(3, dedup_key="k1"),
                              event(4, dedup_key="k0")])
    assert [r.seq for r in recs] == [2, 3, 2, 1]
    assert store.head()[0] == 3
    assert store.verify().ok


def test_query_filters(store: AuditStore) -> None:
    store.append_many([event(i) for i in range(10)])
    assert [r.seq for r in store.query(subject="mock:user-1")] == [2, 5, 8]
    assert [r.seq for r in store.query(workflow_id="containment-wf0", after_seq=4)] == [5, 7, 9]
    assert [r.seq for r in store.query(since=T0 + timedelta(seconds=3),
                                       until=T0 + timedelta(seconds=6))] == [4, 5, 6]
    assert [r.seq for r in store.query(alert_id="alert-7")] == [8]
    assert [r.seq for r in store.query(after_seq=2, limit=3)] == [3, 4, 5]
    store.append(event(10, type=AuditType.decision_recorded))
    assert [r.seq for r in store.query(types=[AuditType.decision_recorded])] == [11]
    assert [r.seq for r in store.query(types=["decision.recorded", "alert.received"],
                                       after_seq=9)] == [10, 11]
    assert store.query(types=[]) == []


def test_naive_and_offset_times_normalize_to_utc(store: AuditStore) -> None:
    from datetime import datetime, timezone

    aware = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    rec = store.append(event(0, at=aware))
    assert rec.at == T0
    assert json.loads(canonical_json({"at": rec.at.isoformat()}))  # sanity: serializable
    assert [r.seq for r in store.query(since=T0, until=T0 + timedelta(seconds=1))] == [1]


def test_doubts_lists_intents_without_result(store: AuditStore) -> None:
    def action(n: int, aid: str, phase: str, t: AuditType) -> None:
        store.append(event(n, type=t, action_id=aid, phase=phase, dedup_key=f"{aid}:{phase}"))

    action(0, "a1", "intent", AuditType.action_intent)
    action(1, "a1", "result", AuditType.action_result)
    action(2, "a2", "intent", AuditType.action_intent)
    action(3, "a3", "intent", AuditType.action_intent)
    action(4, "a3", "result", AuditType.action_failed)
    action(5, "a4", "intent", AuditType.action_intent)
    assert [r.action_id for r in store.doubts()] == ["a2", "a4"]
    action(6, "a2", "intent", AuditType.action_intent)  # a retried activity: no duplicate
    action(7, "a2", "result", AuditType.action_result)
    assert [r.action_id for r in store.doubts()] == ["a4"]
    assert store.head()[0] == 7
    action(8, "undo-a1", "intent", AuditType.revert)  # an undo has intent and result too
    assert [r.action_id for r in store.doubts()] == ["a4", "undo-a1"]
    action(9, "undo-a1", "result", AuditType.revert)
    assert [r.action_id for r in store.doubts()] == ["a4"]
