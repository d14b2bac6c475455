"""Append-only, hash-chained audit log: stores, verification, checkpoints, SIEM export.

Callers code against :class:`AuditStore` (synchronous; use ``asyncio.to_thread`` from async
code) and get one from :func:`open_store`. See ``stanch/audit/base.py`` for the record format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stanch.audit.base import (
    GENESIS_HASH,
    AuditError,
    AuditStore,
    Checkpoint,
    VerifyReport,
)
from stanch.audit.sqlite import SqliteAuditStore

if TYPE_CHECKING:
    from stanch.config import Settings


def open_store(settings: Settings) -> AuditStore:
    """The store configured in ``settings.audit`` (SQLite file, or a PostgreSQL schema)."""
    if settings.audit.store == "postgres":
        from stanch.audit.postgres import PostgresAuditStore

        if settings.audit.postgres_dsn is None:
            raise AuditError("setting audit.postgres_dsn [STANCH_AUDIT__POSTGRES_DSN] is "
                             "required when audit.store is 'postgres'")
        return PostgresAuditStore(settings.audit.postgres_dsn.get_secret_value(),
                                  schema=settings.audit.postgres_schema)
    return SqliteAuditStore(settings.audit_sqlite_path)


def checkpoint_key(settings: Settings) -> bytes | None:
    """The configured HMAC key for checkpoints, as bytes, or None."""
    key = settings.audit.checkpoint_key
    return key.get_secret_value().encode() if key is not None else None


__all__ = [
    "GENESIS_HASH",
    "AuditError",
    "AuditStore",
    "Checkpoint",
    "SqliteAuditStore",
    "VerifyReport",
    "checkpoint_key",
    "open_store",
]
