"""Concurrent appends in one process share transactions and stay one verified chain."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from stanch.audit import AuditStore
from stanch.audit.base import GroupCommit
from stanch.models import AuditEvent, AuditRecord, AuditType


def _event(i: int, key: str | None = None) -> AuditEvent:
    return AuditEvent(type=AuditType.action_intent, at=datetime.now(UTC), actor="t",
                      action_id=f"a{i}", phase="intent", dedup_key=key)


def test_concurrent_appends_share_transactions_and_keep_the_chain(store: AuditStore) -> None:
    batches: list[int] = []
    group: GroupCommit = store._group  # type: ignore[attr-defined]
    inner = group._write

    def counting(events: Sequence[AuditEvent]) -> list[AuditRecord]:
        batches.append(len(events))
        return inner(events)

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


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_one_succeeds() -> None:
    written: list[str] = []
    gate = threading.Event()
    fail = {"on": True}

    def write(events: Sequence[AuditEvent]) -> list[AuditRecord]:
        gate.wait(5)
        if fail["on"]:
            fail["on"] = False
            raise OSError("disk full")
        written.extend(e.actor for e in events)
        return [AuditRecord(seq=i + 1, hash="0" * 64, prev_hash="0" * 64,
                            **e.model_dump()) for i, e in enumerate(events)]

    group = GroupCommit(write)
    errors: list[BaseException] = []
    ok: list[AuditRecord] = []

    def call(i: int) -> None:
        try:
            ok.append(group.append(_event(i).model_copy(update={"actor": f"c{i}"})))
        except OSError as err:
            errors.append(err)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    # The first batch failed as a whole; every event it carried was reported, none lost
    # silently, and the rest were written by later turns.
    assert len(errors) + len(ok) == 8 and errors
    assert sorted(written) == sorted(r.actor for r in ok)
    assert all(str(e) == "disk full" for e in errors)
