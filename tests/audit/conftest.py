"""Fixtures: every store test runs against SQLite and PostgreSQL (a fresh schema each)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from stanch.audit import AuditStore, SqliteAuditStore

from .helpers import PG_DSN, Tamper


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


@pytest.fixture
def pg_schema(pg_available: bool) -> Iterator[str]:
    if not pg_available:
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is required for the audit suite")
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _open(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> AuditStore:
    if kind == "sqlite":
        return SqliteAuditStore(tmp_path / "audit.db")
    from stanch.audit.postgres import PostgresAuditStore, setup_postgres

    schema = request.getfixturevalue("pg_schema")
    setup_postgres(PG_DSN, schema)
    return PostgresAuditStore(PG_DSN, schema=schema)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[AuditStore]:
    s = _open(request.param, tmp_path, request)
    yield s
    s.close()


@pytest.fixture
def tamper(store: AuditStore) -> Iterator[Tamper]:
    """Run raw SQL the way an attacker with database access would: protections off."""
    if isinstance(store, SqliteAuditStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")

        def run_sqlite(sql: str, *args: Any) -> None:
            conn.execute(sql, args)

        yield run_sqlite
        conn.close()
        return
    schema = store.schema  # type: ignore[attr-defined]
    pg = psycopg.connect(PG_DSN, autocommit=True)
    pg.execute(f'SET search_path TO "{schema}"')
    pg.execute("ALTER TABLE audit_records DISABLE TRIGGER USER")

    def run_pg(sql: str, *args: Any) -> None:
        pg.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]

    yield run_pg
    pg.close()
