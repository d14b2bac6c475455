"""The embedded audit store: one SQLite file in WAL mode, shared by the API and the worker.

Appends run in ``BEGIN IMMEDIATE`` transactions, which take SQLite's write lock up front, so
two processes appending at once are serialized before either reads the chain head or looks
up a dedup key. Writers first queue on an OS file lock (``<file>.lock``): the kernel wakes
the next one the moment the lock is free, where SQLite's busy handler sleeps and polls
(measured here: p99 35-55 ms and stalls of 0.6 s per append with two busy processes).
Triggers refuse UPDATE and DELETE on records: a mistake cannot rewrite
history, and anyone who drops the triggers to do it on purpose is caught by ``verify``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from stanch.audit.base import (
    GENESIS_HASH,
    AuditError,
    Checkpoint,
    GroupCommit,
    StoredRow,
    VerifyReport,
    format_ts,
    index_columns,
    prepare,
    record_from,
    seal,
    storage_dedup_key,
)
from stanch.audit.checkpoint import checkpoint_event, sign
from stanch.audit.side_tables import write_transaction
from stanch.audit.verify import verify_rows
from stanch.models import AuditEvent, AuditRecord, AuditType
from stanch.sqlite_wal import use_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq         INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL,
    body        TEXT NOT NULL,
    type        TEXT NOT NULL,
    at          TEXT NOT NULL,
    subject     TEXT,
    workflow_id TEXT,
    action_id   TEXT,
    phase       TEXT,
    dedup_key   TEXT UNIQUE,
    alert_ids   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject, seq);
CREATE INDEX IF NOT EXISTS audit_records_workflow ON audit_records (workflow_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_type ON audit_records (type, seq);
CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records (at);
CREATE INDEX IF NOT EXISTS audit_records_action ON audit_records (action_id);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    head_seq   INTEGER NOT NULL,
    head_hash  TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_outbox (
    seq             INTEGER PRIMARY KEY,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at TEXT
);
"""

_COLS = "seq, hash, body, type, at, subject, workflow_id, action_id, phase, dedup_key, alert_ids"


class SqliteAuditStore:
    """:class:`~stanch.audit.AuditStore` on a SQLite file (created if missing)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per store, guarded by a lock: callers reach us from worker threads.
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._lock = threading.RLock()
        self._group = GroupCommit(self._append_prepared)
        self._writer_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._use_wal(busy_timeout)
            self._conn.execute("PRAGMA synchronous = FULL")
            with self._write():
                for stmt in _SCHEMA.split(";\n"):
                    if stmt.strip():
                        self._conn.execute(stmt)

    def _use_wal(self, timeout: float) -> None:
        try:
            use_wal(self._conn, timeout=timeout)
        except sqlite3.OperationalError as err:
            raise AuditError(f"could not switch {self.path} to WAL journal mode: {err}"
                             ) from err

    # ------------------------------------------------------------------ transactions
    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock, self._writer_fd)

    # ------------------------------------------------------------------ writing
    def append(self, event: AuditEvent) -> AuditRecord:
        # Concurrent appends (API requests, activities) share one transaction and fsync;
        # a record that could never be stored is refused here, before it joins one.
        return self._group.append(prepare(event))

    def append_many(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        return self._append_prepared([prepare(e) for e in events])

    def _append_prepared(self, prepared: Sequence[dict[str, Any]]) -> list[AuditRecord]:
        out: list[AuditRecord] = []
        with self._write() as conn:
            seq, prev = self._head(conn)
            for fields in prepared:
                key = fields["dedup_key"]
                existing = self._find(conn, key) if key is not None else None
                if existing is not None:
                    out.append(existing)
                    continue
                seq += 1
                body, hash_ = seal(fields, seq, prev)
                cols = index_columns(fields)
                conn.execute(
                    f"INSERT INTO audit_records ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                    (seq, hash_, body, cols["type"], cols["at"], cols["subject"],
                     cols["workflow_id"], cols["action_id"], cols["phase"], key,
                     json.dumps(cols["alert_ids"])),
                )
                conn.execute("INSERT INTO audit_outbox (seq) VALUES (?)", (seq,))
                prev = hash_
                out.append(record_from(body, hash_))
        return out

    def checkpoint(self, key: bytes, at: datetime) -> Checkpoint:
        with self._write() as conn:
            head_seq, head_hash = self._head(conn)
            sig = sign(key, head_seq, head_hash, at)
            cur = conn.execute(
                "INSERT INTO audit_checkpoints (at, head_seq, head_hash, signature) "
                "VALUES (?,?,?,?)", (format_ts(at), head_seq, head_hash, sig))
            cp = Checkpoint(id=cur.lastrowid, at=at, head_seq=head_seq, head_hash=head_hash,
                            signature=sig)
        self.append(checkpoint_event(cp))
        return cp

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _head(conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
                           ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    @staticmethod
    def _find(conn: sqlite3.Connection, key: str) -> AuditRecord | None:
        row = conn.execute("SELECT body, hash FROM audit_records WHERE dedup_key = ?",
                           (key,)).fetchone()
        return record_from(row[0], row[1]) if row else None

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._head(self._conn)

    def get(self, seq: int) -> AuditRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT body, hash FROM audit_records WHERE seq = ?",
                                     (seq,)).fetchone()
        return record_from(row[0], row[1]) if row else None

    def find(self, dedup_key: str) -> AuditRecord | None:
        key = storage_dedup_key(dedup_key)
        assert key is not None
        with self._lock:
            return self._find(self._conn, key)

    def query(
        self,
        *,
        subject: str | None = None,
        workflow_id: str | None = None,
        types: Iterable[AuditType | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        alert_id: str | None = None,
    ) -> list[AuditRecord]:
        where: list[str] = ["seq > ?"]
        args: list[Any] = [after_seq]
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if workflow_id is not None:
            where.append("workflow_id = ?")
            args.append(workflow_id)
        if types is not None:
            names = [str(AuditType(t)) for t in types]
            where.append(f"type IN ({','.join('?' * len(names))})" if names else "0")
            args.extend(names)
        if since is not None:
            where.append("at >= ?")
            args.append(format_ts(since))
        if until is not None:
            where.append("at < ?")
            args.append(format_ts(until))
        if alert_id is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(audit_records.alert_ids) "
                         "WHERE value = ?)")
            args.append(alert_id)
        # Only constant clauses are joined; every value is a bound parameter.
        sql = (f"SELECT body, hash FROM audit_records WHERE {' AND '.join(where)} "  # noqa: S608
               f"ORDER BY seq LIMIT ?")
        with self._lock:
            rows = self._conn.execute(sql, (*args, max(0, limit))).fetchall()
        return [record_from(b, h) for b, h in rows]

    def doubts(self) -> list[AuditRecord]:
        sql = """
            SELECT i.body, i.hash FROM audit_records i
            WHERE (i.type = ? OR i.phase = 'intent') AND NOT EXISTS (
                SELECT 1 FROM audit_records r
                WHERE r.action_id = i.action_id AND r.seq > i.seq
                  AND (r.phase = 'result' OR r.type IN (?, ?)))
            ORDER BY i.seq"""
        with self._lock:
            rows = self._conn.execute(sql, (AuditType.action_intent.value,
                                            AuditType.action_result.value,
                                            AuditType.action_failed.value)).fetchall()
        return [record_from(b, h) for b, h in rows]

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            rows = self._conn.execute("SELECT id, at, head_seq, head_hash, signature "
                                      "FROM audit_checkpoints ORDER BY id").fetchall()
        return [Checkpoint(id=i, at=datetime.fromisoformat(a), head_seq=s, head_hash=h,
                           signature=sig) for i, a, s, h, sig in rows]

    def _rows(self, page: int = 1000) -> Iterator[StoredRow]:
        after = -1 << 62
        while True:
            with self._lock:
                batch = self._conn.execute(
                    f"SELECT {_COLS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                    (after, page)).fetchall()
            for r in batch:
                yield _stored(r)
            if len(batch) < page:
                return
            after = batch[-1][0]

    def verify(self, checkpoint_key: bytes | None = None) -> VerifyReport:
        return verify_rows(self._rows(), self.checkpoints(), checkpoint_key)

    # ------------------------------------------------------------------ outbox
    def outbox_pending(self, limit: int = 100) -> list[AuditRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT r.body, r.hash FROM audit_outbox o JOIN audit_records r "
                "ON r.seq = o.seq ORDER BY o.seq LIMIT ?", (limit,)).fetchall()
        return [record_from(b, h) for b, h in rows]

    def outbox_delivered(self, seqs: Sequence[int]) -> None:
        with self._write() as conn:
            conn.executemany("DELETE FROM audit_outbox WHERE seq = ?", [(s,) for s in seqs])

    def outbox_failed(self, seqs: Sequence[int], error: str, at: datetime) -> None:
        with self._write() as conn:
            conn.executemany(
                "UPDATE audit_outbox SET attempts = attempts + 1, last_error = ?, "
                "last_attempt_at = ? WHERE seq = ?",
                [(error[:500], format_ts(at), s) for s in seqs])

    def outbox_backlog(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._writer_fd >= 0:
                os.close(self._writer_fd)
                self._writer_fd = -1

    def __repr__(self) -> str:
        return f"SqliteAuditStore({str(self.path)!r})"


def _stored(r: tuple[Any, ...]) -> StoredRow:
    seq, hash_, body, type_, at, subject, workflow_id, action_id, phase, dedup, alerts = r
    try:
        alert_ids = json.loads(alerts)
    except (TypeError, ValueError):
        alert_ids = alerts
    return StoredRow(seq=seq, body=body, hash=hash_, columns={
        "type": type_, "at": at, "subject": subject, "workflow_id": workflow_id,
        "action_id": action_id, "phase": phase, "dedup_key": dedup, "alert_ids": alert_ids})


__all__ = ["SqliteAuditStore"]
