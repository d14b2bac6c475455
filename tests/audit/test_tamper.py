"""Tampering with the stored chain is caught, and the report names the record and the harm."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from stanch.audit import AuditStore
from stanch.audit.base import seal

from .helpers import T0, Tamper, event

KEY = b"checkpoint-key-for-tests"


def _fill(store: AuditStore, n: int = 8) -> None:
    store.append_many([event(i) for i in range(n)])
    assert store.verify().ok


def _body(store: AuditStore, seq: int) -> dict:
    rec = store.get(seq)
    assert rec is not None
    return json.loads(seal(_fields(rec.model_dump(mode="json")), rec.seq, rec.prev_hash)[0])


def _fields(d: dict) -> dict:
    d = {k: v for k, v in d.items() if k not in ("seq", "prev_hash", "hash")}
    d["at"] = (T0 + timedelta(seconds=d["data"]["n"])).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d


def test_intact_chain_verifies(store: AuditStore) -> None:
    _fill(store)
    store.checkpoint(KEY, T0 + timedelta(hours=1))
    report = store.verify(KEY)
    assert report.ok and report.checkpoints == 1 and report.signatures_checked
    assert report.records == 9  # eight events and the checkpoint's own record


def test_edited_body_is_named(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    body = _body(store, 4)
    body["reason"] = "nothing to see"
    tamper("UPDATE audit_records SET body = ? WHERE seq = 4",
           json.dumps(body, sort_keys=True, separators=(",", ":")))
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert "record 4 was edited" in (report.problem or "")


def test_edited_body_with_recomputed_hash_breaks_the_next_link(store: AuditStore,
                                                              tamper: Tamper) -> None:
    _fill(store)
    body = _body(store, 4)
    body["actor"] = "mallory"
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    tamper("UPDATE audit_records SET body = ?, hash = ? WHERE seq = 4", text,
           hashlib.sha256(text.encode()).hexdigest())
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 5
    assert "record 5 does not link to record 4" in (report.problem or "")


def test_edited_index_column_is_named(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    tamper("UPDATE audit_records SET subject = ? WHERE seq = 6", "mock:someone-else")
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 6
    assert "column 'subject'" in (report.problem or "")


def test_deleted_record_is_named(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    tamper("DELETE FROM audit_records WHERE seq = 3")
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 3
    assert "record 3 deleted" in (report.problem or "")


def test_deleted_first_records_are_named(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    tamper("DELETE FROM audit_records WHERE seq <= 2")
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 1
    assert "records 1..2 deleted" in (report.problem or "")


def test_swapped_records_are_named(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    tamper("UPDATE audit_records SET seq = -5 WHERE seq = 5")
    tamper("UPDATE audit_records SET seq = 5 WHERE seq = 6")
    tamper("UPDATE audit_records SET seq = 6 WHERE seq = -5")
    report = store.verify()
    assert not report.ok and report.first_bad_seq == 5
    assert "reordered: position 5 holds record 6" in (report.problem or "")


def test_truncated_tail_is_caught_by_checkpoint(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    cp = store.checkpoint(KEY, T0 + timedelta(hours=1))
    assert cp.head_seq == 8
    store.append(event(20))
    tamper("DELETE FROM audit_records WHERE seq >= 7")
    # Without a checkpoint the shortened chain still links; the checkpoint gives it away.
    report = store.verify(KEY)
    assert not report.ok and report.first_bad_seq == 7
    assert "log truncated: it ends at seq 6" in (report.problem or "")
    assert "head at seq 8" in (report.problem or "")
    assert not store.verify().ok  # the unsigned comparison still sees it


def test_forged_checkpoint_is_refused_with_the_key(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    store.checkpoint(KEY, T0 + timedelta(hours=1))
    tamper("DELETE FROM audit_records WHERE seq >= 6")
    # An attacker lowers the checkpoint to match, but cannot sign it.
    tamper("UPDATE audit_checkpoints SET head_seq = 5, head_hash = "
           "(SELECT hash FROM audit_records WHERE seq = 5)")
    assert store.verify().ok  # without the key the forgery looks fine…
    report = store.verify(KEY)  # …with it, it does not
    assert not report.ok and "invalid signature" in (report.problem or "")


def test_rewritten_chain_is_caught_by_checkpoint(store: AuditStore, tamper: Tamper) -> None:
    _fill(store)
    store.checkpoint(KEY, T0 + timedelta(hours=1))
    # Rewrite record 7 and re-hash everything after it so every link holds again.
    prev = store.get(6)
    assert prev is not None
    prev_hash = prev.hash
    for seq in range(7, 10):
        rec = store.get(seq)
        assert rec is not None
        fields = rec.model_dump(mode="json", exclude={"seq", "prev_hash", "hash"})
        fields["at"] = rec.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if seq == 7:
            fields["reason"] = "rewritten"
        body, h = seal(fields, seq, prev_hash)
        tamper("UPDATE audit_records SET body = ?, hash = ? WHERE seq = ?", body, h, seq)
        prev_hash = h
    assert store.verify(None).ok is False
    report = store.verify(KEY)
    assert not report.ok and report.first_bad_seq == 8
    assert "record 8 differs from checkpoint" in (report.problem or "")


def test_append_only_guard_refuses_updates(store: AuditStore) -> None:
    import sqlite3

    import psycopg
    import pytest

    from stanch.audit import SqliteAuditStore

    from .helpers import pg_dsn_of

    _fill(store, 2)
    if isinstance(store, SqliteAuditStore):
        conn = sqlite3.connect(store.path)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_records WHERE seq = 1")
        conn.close()
    else:
        with psycopg.connect(pg_dsn_of(store)) as pg:
            pg.execute(f'SET search_path TO "{store.schema}"')  # type: ignore[attr-defined]
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                pg.execute("UPDATE audit_records SET subject = 'x' WHERE seq = 1")
    assert store.verify().ok
