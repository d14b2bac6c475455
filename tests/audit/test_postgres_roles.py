"""On PostgreSQL the worker role may add and read records, never change or remove them."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from stanch.audit.postgres import WORKER_ROLE, PostgresAuditStore, setup_postgres

from .helpers import event


def test_worker_role_can_append_but_not_rewrite(pg_dsn: str, pg_schema: str) -> None:
    worker_dsn = make_conninfo(pg_dsn, user=WORKER_ROLE)
    setup_postgres(pg_dsn, pg_schema)
    setup_postgres(pg_dsn, pg_schema)  # idempotent
    worker = PostgresAuditStore(worker_dsn, schema=pg_schema)
    worker.append_many([event(i) for i in range(3)])
    worker.checkpoint(b"k", event(9).at)
    assert [r.seq for r in worker.outbox_pending()] == [1, 2, 3, 4]
    worker.outbox_delivered([1])
    assert worker.verify(b"k").ok
    worker.close()

    with psycopg.connect(worker_dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{pg_schema}"')
        for stmt in ("UPDATE audit_records SET subject = 'x' WHERE seq = 1",
                     "DELETE FROM audit_records WHERE seq = 3",
                     "TRUNCATE audit_records",
                     "DELETE FROM audit_checkpoints",
                     "UPDATE audit_checkpoints SET head_seq = 0",
                     "DROP TABLE audit_records",
                     "ALTER TABLE audit_records DISABLE TRIGGER USER"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
        assert conn.execute("SELECT count(*) FROM audit_records").fetchone() == (4,)
