"""Concurrent appends in one process share transactions and stay one verified chain."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from stanch.audit import AuditStore
from stanch.audit.base import GroupCommit, UnstorableRecord, prepare
from stanch.models import AuditEvent, AuditRecord, AuditType


def _event(i: int, key: str | None = None) -> AuditEvent:
    return AuditEvent(type=AuditType.action_intent, at=datetime.now(UTC), actor="t",
                      action_id=f"a{i}", phase="intent", dedup_key=key)


def test_concurrent_appends_share_transactions_and_keep_the_chain(store: AuditStore) -> None:
    batches: list[int] = []
    group: GroupCommit = store._group  # type: ignore[attr-defined]
    inner = group._write

    def counting(batch: Sequence[dict[str, Any]]) -> list[AuditRecord]:
        batches.append(len(batch))
        return inner(batch)

    group._write = counting
    n = 400
    with ThreadPoolExecutor(max_workers=16) as pool:
        records = list(pool.map(lambda i: store.append(_event(i, f"k{i % 300}")), range(n)))
    # Every caller got its own record back; a repeated dedup key got the first one.
    assert [r.action_id for r in records[:300]] == [f"a{i}" for i in range(300)]
    assert all(records[i].seq == records[i - 300].seq for i in range(300, n))
    assert sorted(r.seq for r in records[:300]) == list(range(1, 301))
    assert sum(batches) == n and len(batches) < n  # some calls really shared a commit
    report = store.verify()
    assert report.ok and report.head_seq == 300, report.problem


def _fake_record(i: int, fields: dict[str, Any]) -> AuditRecord:
    return AuditRecord(seq=i + 1, hash="0" * 64, prev_hash="0" * 64,
                       **{**fields, "at": datetime.now(UTC)})


def test_a_failed_batch_is_retried_member_by_member() -> None:
    """A transaction that fails because of one member (a constraint only the store knows)
    fails that member's caller alone; the others are written on the retry."""
    written: list[str] = []
    batches: list[int] = []
    gate = threading.Event()

    def write(batch: Sequence[dict[str, Any]]) -> list[AuditRecord]:
        gate.wait(5)
        batches.append(len(batch))
        if any(f["actor"].startswith("poison") for f in batch):
            raise OSError("the store refused the transaction")
        written.extend(f["actor"] for f in batch)
        return [_fake_record(i, f) for i, f in enumerate(batch)]

    group = GroupCommit(write)
    errors: dict[str, BaseException] = {}
    ok: dict[str, AuditRecord] = {}

    def call(i: int) -> None:
        actor = f"poison{i}" if i % 7 == 3 else f"c{i}"
        try:
            ok[actor] = group.append(prepare(_event(i).model_copy(update={"actor": actor})))
        except OSError as err:
            errors[actor] = err

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(errors) == sorted(f"poison{i}" for i in range(32) if i % 7 == 3)
    assert sorted(ok) == sorted(written) == sorted(f"c{i}" for i in range(32) if i % 7 != 3)
    assert max(batches) > 1  # batches really formed, and failed ones were split


BAD_TEXT = [
    {"reason": "unpaired \ud800 surrogate"},
    {"data": {"note": "\udfff"}},
    {"data": {"list": ["x", "\ud800"]}},
    {"subject": "mock:nul\x00byte"},
    {"alert_ids": ["ok", "a\x00b"]},
    {"dedup_key": "key-\ud801"},
]


def test_an_unstorable_record_is_refused_before_it_joins_a_batch(store: AuditStore) -> None:
    """Mixed appends from many threads: every bad record is refused with the field named,
    every good one is written, and the chain holds exactly the good ones."""
    def event(i: int) -> tuple[AuditEvent, bool]:
        base = _event(i, f"mixed-{i}")
        if i % 5 == 2:
            return base.model_copy(update=BAD_TEXT[i % len(BAD_TEXT)]), False
        return base, True

    def call(i: int) -> tuple[int, bool, AuditRecord | UnstorableRecord]:
        ev, good = event(i)
        try:
            return i, good, store.append(ev)
        except UnstorableRecord as err:
            return i, good, err

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(call, range(300)))
    good = [(i, r) for i, g, r in outcomes if g]
    bad = [(i, r) for i, g, r in outcomes if not g]
    assert all(isinstance(r, AuditRecord) for _, r in good)
    assert all(isinstance(r, UnstorableRecord) for _, r in bad)
    fields = {r.field for _, r in bad if isinstance(r, UnstorableRecord)}
    assert fields == {"reason", "data", "subject", "alert_ids", "dedup_key"}
    report = store.verify()
    assert report.ok and report.head_seq == len(good), report.problem
    for i, _ in good:
        found = store.find(f"mixed-{i}")
        assert found is not None and found.action_id == f"a{i}"
