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
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from stanch.audit.side_tables import PostgresSideTables, SqliteSideTables

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


class SqliteDeliveryMemory(SqliteSideTables):
    """A ``deliveries`` table in the audit SQLite file; writers queue on its file lock."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__(path, busy_timeout=busy_timeout, ddl=(
            "CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, "
            "outcome TEXT NOT NULL, seen_at TEXT NOT NULL, expires REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS deliveries_expires ON deliveries (expires)"))

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


POSTGRES_DDL = ("CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, "
                "outcome TEXT NOT NULL, seen_at TIMESTAMPTZ NOT NULL, "
                "expires TIMESTAMPTZ NOT NULL);\n"
                "CREATE INDEX IF NOT EXISTS deliveries_expires ON deliveries (expires)")


class PostgresDeliveryMemory(PostgresSideTables):
    """The ``deliveries`` table in the audit schema (created by ``setup-postgres``)."""

    def __init__(self, dsn: str, *, schema: str = "stanch_audit") -> None:
        super().__init__(dsn, schema=schema, table="deliveries", ddl=POSTGRES_DDL)

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


def open_deliveries(settings: Any) -> DeliveryMemory:
    """The delivery memory beside the configured audit store."""
    if settings.audit.store == "postgres" and settings.audit.postgres_dsn is not None:
        return PostgresDeliveryMemory(settings.audit.postgres_dsn.get_secret_value(),
                                      schema=settings.audit.postgres_schema)
    return SqliteDeliveryMemory(settings.audit_sqlite_path)
