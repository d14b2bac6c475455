"""Fixtures: every store test runs against SQLite and PostgreSQL (a fresh schema each)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from stanch.audit import AuditStore, SqliteAuditStore

from .helpers import Tamper, pg_dsn_of


@pytest.fixture
def pg_dsn(postgres_dsn: str) -> str:
    """The session's own PostgreSQL (tests/pgserver.py); nothing on 5432 is assumed."""
    return postgres_dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _open(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> AuditStore:
    if kind == "sqlite":
        return SqliteAuditStore(tmp_path / "audit.db")
    from stanch.audit.postgres import PostgresAuditStore, setup_postgres

    dsn = request.getfixturevalue("pg_dsn")
    schema = request.getfixturevalue("pg_schema")
    setup_postgres(dsn, schema)
    return PostgresAuditStore(dsn, schema=schema)


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
    pg = psycopg.connect(pg_dsn_of(store), autocommit=True)
    pg.execute(f'SET search_path TO "{schema}"')
    pg.execute("ALTER TABLE audit_records DISABLE TRIGGER USER")

    def run_pg(sql: str, *args: Any) -> None:
        pg.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]

    yield run_pg
    pg.close()
