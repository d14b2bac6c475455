"""The audit store on PostgreSQL, for deployments with several workers or a shared database.

Appends are serialized on the chain head with a transaction-scoped advisory lock (one per
schema): every writer reads the head and looks up the dedup key only after taking it, so the
chain stays linear and a dedup key is written once however many workers retry at once. The
lock needs no table privileges, which lets :func:`setup_postgres` give the worker role only
INSERT and SELECT on the records: a compromised worker can add records but never rewrite one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

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
from stanch.audit.deliveries import POSTGRES_DDL
from stanch.audit.verify import verify_rows
from stanch.models import AuditEvent, AuditRecord, AuditType

WORKER_ROLE = "stanch_worker"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq         BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL,
    body        TEXT NOT NULL,
    type        TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    subject     TEXT,
    workflow_id TEXT,
    action_id   TEXT,
    phase       TEXT,
    dedup_key   TEXT UNIQUE,
    alert_ids   TEXT[] NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject, seq);
CREATE INDEX IF NOT EXISTS audit_records_workflow ON audit_records (workflow_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_type ON audit_records (type, seq);
CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records (at);
CREATE INDEX IF NOT EXISTS audit_records_action ON audit_records (action_id);
CREATE INDEX IF NOT EXISTS audit_records_alerts ON audit_records USING gin (alert_ids);
CREATE OR REPLACE FUNCTION audit_records_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END $$;
DROP TRIGGER IF EXISTS audit_records_no_change ON audit_records;
CREATE TRIGGER audit_records_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    head_seq   BIGINT NOT NULL,
    head_hash  TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_outbox (
    seq             BIGINT PRIMARY KEY,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at TIMESTAMPTZ
)
"""

_COLS = "seq, hash, body, type, at, subject, workflow_id, action_id, phase, dedup_key, alert_ids"


def _connect(dsn: str, schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def setup_postgres(dsn: str, schema: str = "stanch_audit",
                   worker_role: str | None = WORKER_ROLE) -> None:
    """Create the schema and tables (idempotent), and the worker role with least privilege:
    INSERT and SELECT on records and checkpoints, and what the shipper needs on the outbox.
    Run as the schema owner (``stanch audit setup-postgres``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ident = sql.Identifier(schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET search_path TO {}").format(ident))
        with conn.transaction():
            # Concurrent set-ups of one schema would race on CREATE … IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(schema),))
            conn.execute(_SCHEMA)
            for stmt in POSTGRES_DDL.split(";\n"):  # the API's delivery memory
                conn.execute(stmt)
            for stmt in CONSOLE_SESSIONS_DDL.split(";\n"):  # the console's sessions
                conn.execute(stmt)
        if worker_role is None:
            return
        role = sql.Identifier(worker_role)
        try:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # roles are cluster-wide: another schema's set-up made it already
        for stmt in (
            "GRANT USAGE ON SCHEMA {s} TO {r}",
            "REVOKE ALL ON audit_records, audit_checkpoints, audit_outbox FROM {r}",
            "GRANT SELECT, INSERT ON audit_records TO {r}",
            "GRANT SELECT, INSERT ON audit_checkpoints TO {r}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON audit_outbox TO {r}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON deliveries TO {r}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO {r}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON console_sign_ins TO {r}",
        ):
            conn.execute(sql.SQL(stmt).format(s=ident, r=role))


# The console's sessions (stanch.console.session_db): the digest of the session id, never it.
# Also the OpenID sign-ins begun and not yet finished, by the digest of their state.
CONSOLE_SESSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS console_sessions (key TEXT PRIMARY KEY, "
    "principal TEXT NOT NULL, csrf TEXT NOT NULL, via TEXT NOT NULL, "
    "expires TIMESTAMPTZ NOT NULL, flash TEXT NOT NULL DEFAULT '[]');\n"
    "CREATE TABLE IF NOT EXISTS console_sign_ins (key TEXT PRIMARY KEY, "
    "data TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL)")


def _lock_id(schema: str) -> int:
    digest = hashlib.sha256(f"stanch.audit:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresAuditStore:
    """:class:`~stanch.audit.AuditStore` on a PostgreSQL schema."""

    def __init__(self, dsn: str, *, schema: str = "stanch_audit") -> None:
        self.schema = schema
        self._dsn = dsn
        self._lock = threading.RLock()
        self._group = GroupCommit(self._append_prepared)
        self._lock_id = _lock_id(schema)
        self._conn = _connect(dsn, schema)
        row = self._conn.execute("SELECT to_regclass('audit_records')").fetchone()
        if row is None or row[0] is None:
            try:
                setup_postgres(dsn, schema, worker_role=None)
            except psycopg.Error as err:
                raise AuditError(
                    f"audit tables are missing in PostgreSQL schema {schema!r} and could not "
                    f"be created ({err.__class__.__name__}); run `stanch audit setup-postgres` "
                    f"as the schema owner"
                ) from None

    # ------------------------------------------------------------------ plumbing
    def _c(self) -> psycopg.Connection[Any]:
        if self._conn.closed or self._conn.broken:
            self._conn = _connect(self._dsn, self.schema)
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            conn = self._c()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
                yield conn

    def _records(self, query: str, args: Sequence[Any] = ()) -> list[AuditRecord]:
        with self._lock:
            rows = self._c().execute(query, args).fetchall()  # type: ignore[call-overload]
        return [record_from(b, h) for b, h in rows]

    # ------------------------------------------------------------------ writing
    def append(self, event: AuditEvent) -> AuditRecord:
        # Concurrent appends share one transaction (and one advisory-lock turn); a record
        # that could never be stored is refused here, before it joins one.
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
                    f"INSERT INTO audit_records ({_COLS}) "  # noqa: S608
                    f"VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (seq, hash_, body, cols["type"], datetime.fromisoformat(cols["at"]),
                     cols["subject"], cols["workflow_id"], cols["action_id"], cols["phase"],
                     key, cols["alert_ids"]),
                )
                conn.execute("INSERT INTO audit_outbox (seq) VALUES (%s)", (seq,))
                prev = hash_
                out.append(record_from(body, hash_))
        return out

    def checkpoint(self, key: bytes, at: datetime) -> Checkpoint:
        with self._write() as conn:
            head_seq, head_hash = self._head(conn)
            sig = sign(key, head_seq, head_hash, at)
            row = conn.execute(
                "INSERT INTO audit_checkpoints (at, head_seq, head_hash, signature) "
                "VALUES (%s,%s,%s,%s) RETURNING id",
                (datetime.fromisoformat(format_ts(at)), head_seq, head_hash, sig)).fetchone()
            assert row is not None
            cp = Checkpoint(id=row[0], at=at, head_seq=head_seq, head_hash=head_hash,
                            signature=sig)
        self.append(checkpoint_event(cp))
        return cp

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _head(conn: psycopg.Connection[Any]) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
                           ).fetchone()
        return (int(row[0]), row[1]) if row else (0, GENESIS_HASH)

    @staticmethod
    def _find(conn: psycopg.Connection[Any], key: str) -> AuditRecord | None:
        row = conn.execute("SELECT body, hash FROM audit_records WHERE dedup_key = %s",
                           (key,)).fetchone()
        return record_from(row[0], row[1]) if row else None

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._head(self._c())

    def get(self, seq: int) -> AuditRecord | None:
        found = self._records("SELECT body, hash FROM audit_records WHERE seq = %s", (seq,))
        return found[0] if found else None

    def find(self, dedup_key: str) -> AuditRecord | None:
        key = storage_dedup_key(dedup_key)
        with self._lock:
            return self._find(self._c(), key or "")

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
        where: list[str] = ["seq > %s"]
        args: list[Any] = [after_seq]
        if subject is not None:
            where.append("subject = %s")
            args.append(subject)
        if workflow_id is not None:
            where.append("workflow_id = %s")
            args.append(workflow_id)
        if types is not None:
            where.append("type = ANY(%s)")
            args.append([str(AuditType(t)) for t in types])
        if since is not None:
            where.append("at >= %s")
            args.append(since)
        if until is not None:
            where.append("at < %s")
            args.append(until)
        if alert_id is not None:
            where.append("alert_ids @> ARRAY[%s]::text[]")
            args.append(alert_id)
        # Only constant clauses are joined; every value is a bound parameter.
        return self._records(
            f"SELECT body, hash FROM audit_records WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY seq LIMIT %s", (*args, max(0, limit)))

    def doubts(self) -> list[AuditRecord]:
        return self._records(
            """SELECT i.body, i.hash FROM audit_records i
               WHERE (i.type = %s OR i.phase = 'intent') AND NOT EXISTS (
                   SELECT 1 FROM audit_records r
                   WHERE r.action_id = i.action_id AND r.seq > i.seq
                     AND (r.phase = 'result' OR r.type IN (%s, %s)))
               ORDER BY i.seq""",
            (AuditType.action_intent.value, AuditType.action_result.value,
             AuditType.action_failed.value))

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            rows = self._c().execute("SELECT id, at, head_seq, head_hash, signature "
                                     "FROM audit_checkpoints ORDER BY id").fetchall()
        return [Checkpoint(id=i, at=a, head_seq=s, head_hash=h, signature=sig)
                for i, a, s, h, sig in rows]

    def _rows(self, page: int = 1000) -> Iterator[StoredRow]:
        after = -(1 << 62)
        while True:
            with self._lock:
                batch = self._c().execute(
                    f"SELECT {_COLS} FROM audit_records WHERE seq > %s ORDER BY seq LIMIT %s",  # noqa: S608
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
        return self._records(
            "SELECT r.body, r.hash FROM audit_outbox o JOIN audit_records r USING (seq) "
            "ORDER BY o.seq LIMIT %s", (limit,))

    def outbox_delivered(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._c().execute("DELETE FROM audit_outbox WHERE seq = ANY(%s)", (list(seqs),))

    def outbox_failed(self, seqs: Sequence[int], error: str, at: datetime) -> None:
        with self._lock:
            self._c().execute(
                "UPDATE audit_outbox SET attempts = attempts + 1, last_error = %s, "
                "last_attempt_at = %s WHERE seq = ANY(%s)", (error[:500], at, list(seqs)))

    def outbox_backlog(self) -> int:
        with self._lock:
            row = self._c().execute("SELECT count(*) FROM audit_outbox").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"PostgresAuditStore(schema={self.schema!r})"


def _stored(r: tuple[Any, ...]) -> StoredRow:
    seq, hash_, body, type_, at, subject, workflow_id, action_id, phase, dedup, alerts = r
    return StoredRow(seq=int(seq), body=body, hash=hash_, columns={
        "type": type_, "at": format_ts(at) if isinstance(at, datetime) else at,
        "subject": subject, "workflow_id": workflow_id, "action_id": action_id,
        "phase": phase, "dedup_key": dedup, "alert_ids": alerts})


__all__ = ["WORKER_ROLE", "PostgresAuditStore", "setup_postgres"]
