"""Delivery memory: which webhook deliveries and alerts were already handled, for every API.

Kept in the audit database (its own table, beside the chain: SQLite by default, PostgreSQL
at scale), so every API process, and a restarted one, answers a repeat the same way: a
Standard Webhooks id, a GitHub delivery or an alert id seen before is ``deduplicated: true``
and starts nothing, even when the containment it started is long closed. Entries expire
after ``api.delivery_retention_hours``.

Keys are written only after the delivery was handled (dispatched), so a delivery refused
with 503 is retried for real; two copies racing on two APIs both reach the running
workflow, whose own seen-set deduplicates the second.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_PRUNE_EVERY_SECONDS = 60.0
_MAX_KEY = 512


class DeliveryMemory(Protocol):
    def recall(self, keys: Sequence[str], *, now: datetime) -> dict[str, Any] | None:
        """The outcome stored under the first of ``keys`` still remembered, or None."""
        ...

    def remember(self, keys: Sequence[str], outcome: dict[str, Any], *, now: datetime,
                 ttl_seconds: float) -> None:
        """Remember ``keys`` (first writer wins) with ``outcome`` until ``now + ttl``."""
        ...

    def close(self) -> None: ...


def _clip(keys: Sequence[str]) -> list[str]:
    return [k[:_MAX_KEY] for k in dict.fromkeys(keys) if k]


class SqliteDeliveryMemory:
    """A ``deliveries`` table in the audit SQLite file; writers queue on its file lock."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._lock = threading.Lock()
        self._writer_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._pruned = 0.0
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, "
                         "outcome TEXT NOT NULL, seen_at TEXT NOT NULL, expires REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS deliveries_expires ON deliveries (expires)")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if fcntl is not None:
                fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if fcntl is not None:
                    fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def recall(self, keys: Sequence[str], *, now: datetime) -> dict[str, Any] | None:
        keys = _clip(keys)
        if not keys:
            return None
        with self._lock:
            for key in keys:
                row = self._conn.execute(
                    "SELECT outcome FROM deliveries WHERE key = ? AND expires > ?",
                    (key, now.timestamp())).fetchone()
                if row:
                    return dict(json.loads(row[0]))
        return None

    def remember(self, keys: Sequence[str], outcome: dict[str, Any], *, now: datetime,
                 ttl_seconds: float) -> None:
        text = json.dumps(outcome, separators=(",", ":"), default=str)
        t = now.timestamp()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO deliveries (key, outcome, seen_at, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, "
                "seen_at = excluded.seen_at, expires = excluded.expires "
                "WHERE deliveries.expires <= ?",
                [(k, text, now.isoformat(), t + ttl_seconds, t) for k in _clip(keys)])
            if time.monotonic() - self._pruned > _PRUNE_EVERY_SECONDS:
                conn.execute("DELETE FROM deliveries WHERE expires <= ?", (t,))
                self._pruned = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            os.close(self._writer_fd)


POSTGRES_DDL = ("CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, "
                "outcome TEXT NOT NULL, seen_at TIMESTAMPTZ NOT NULL, "
                "expires TIMESTAMPTZ NOT NULL);\n"
                "CREATE INDEX IF NOT EXISTS deliveries_expires ON deliveries (expires)")


class PostgresDeliveryMemory:
    """The ``deliveries`` table in the audit schema (created by ``setup-postgres``)."""

    def __init__(self, dsn: str, *, schema: str = "stanch_audit") -> None:
        import psycopg
        from psycopg import sql

        self._psycopg = psycopg
        self._dsn = dsn
        self._schema = schema
        self._sql = sql
        self._lock = threading.Lock()
        self._pruned = 0.0
        self._conn = self._connect()
        row = self._conn.execute("SELECT to_regclass('deliveries')").fetchone()
        if row is None or row[0] is None:
            from stanch.audit.base import AuditError
            from stanch.audit.postgres import _lock_id

            try:
                with self._conn.transaction():
                    # Several API processes starting together: one creates, the rest wait.
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(schema),))
                    for stmt in POSTGRES_DDL.split(";\n"):
                        self._conn.execute(stmt)
            except psycopg.Error as err:
                raise AuditError(
                    f"the deliveries table is missing in PostgreSQL schema {schema!r} and "
                    f"could not be created ({err.__class__.__name__}); run `stanch audit "
                    "setup-postgres` as the schema owner") from None

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._dsn, autocommit=True)
        conn.execute(self._sql.SQL("SET search_path TO {}").format(
            self._sql.Identifier(self._schema)))
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _c(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def recall(self, keys: Sequence[str], *, now: datetime) -> dict[str, Any] | None:
        keys = _clip(keys)
        if not keys:
            return None
        with self._lock:
            row = self._c().execute(
                "SELECT outcome FROM deliveries WHERE key = ANY(%s) AND expires > %s LIMIT 1",
                (keys, now)).fetchone()
        return json.loads(row[0]) if row else None

    def remember(self, keys: Sequence[str], outcome: dict[str, Any], *, now: datetime,
                 ttl_seconds: float) -> None:
        from datetime import timedelta

        text = json.dumps(outcome, separators=(",", ":"), default=str)
        expires = now + timedelta(seconds=ttl_seconds)
        with self._lock:
            conn = self._c()
            with conn.transaction():
                for k in _clip(keys):
                    conn.execute(
                        "INSERT INTO deliveries (key, outcome, seen_at, expires) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                        "outcome = excluded.outcome, seen_at = excluded.seen_at, "
                        "expires = excluded.expires WHERE deliveries.expires <= %s",
                        (k, text, now, expires, now))
                if time.monotonic() - self._pruned > _PRUNE_EVERY_SECONDS:
                    conn.execute("DELETE FROM deliveries WHERE expires <= %s", (now,))
                    self._pruned = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_deliveries(settings: Any) -> DeliveryMemory:
    """The delivery memory beside the configured audit store."""
    if settings.audit.store == "postgres" and settings.audit.postgres_dsn is not None:
        return PostgresDeliveryMemory(settings.audit.postgres_dsn.get_secret_value(),
                                      schema=settings.audit.postgres_schema)
    return SqliteDeliveryMemory(settings.audit_sqlite_path)
