"""The delivery memory: shared by every API process, persistent, expiring; on SQLite and
PostgreSQL (the worker role may use it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from stanch.audit.deliveries import (
    DeliveryMemory,
    PostgresDeliveryMemory,
    SqliteDeliveryMemory,
)
from stanch.audit.postgres import WORKER_ROLE, setup_postgres
from stanch.redact import redact

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def two(request: pytest.FixtureRequest,
        tmp_path: Path) -> Iterator[tuple[DeliveryMemory, DeliveryMemory]]:
    """Two memories on one database, as two API processes hold them."""
    if request.param == "sqlite":
        pair: tuple[DeliveryMemory, DeliveryMemory] = (
            SqliteDeliveryMemory(tmp_path / "audit.db"),
            SqliteDeliveryMemory(tmp_path / "audit.db"))
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        setup_postgres(dsn, schema)
        worker = make_conninfo(dsn, user=WORKER_ROLE)  # the API's least-privilege role
        pair = (PostgresDeliveryMemory(worker, schema=schema),
                PostgresDeliveryMemory(worker, schema=schema))
    yield pair
    for m in pair:
        m.close()


def test_what_one_process_remembers_the_other_recalls_until_it_expires(
        two: tuple[DeliveryMemory, DeliveryMemory]) -> None:
    a, b = two
    assert b.recall(["received:alert-1"], now=T0) is None
    a.remember(["received:alert-1", "delivery:generic:sw:msg_1"], {"workflow_id": "w1"},
               now=T0, ttl_seconds=3600)
    assert b.recall(["delivery:generic:sw:msg_1"], now=T0) == {"workflow_id": "w1"}
    assert b.recall(["nope", "received:alert-1"], now=T0 + timedelta(minutes=59)) == {
        "workflow_id": "w1"}
    # First writer wins while remembered; after expiry a new answer replaces it.
    b.remember(["received:alert-1"], {"workflow_id": "w2"}, now=T0, ttl_seconds=3600)
    assert a.recall(["received:alert-1"], now=T0) == {"workflow_id": "w1"}
    later = T0 + timedelta(hours=2)
    assert a.recall(["received:alert-1"], now=later) is None
    b.remember(["received:alert-1"], {"workflow_id": "w3"}, now=later, ttl_seconds=60)
    assert a.recall(["received:alert-1"], now=later) == {"workflow_id": "w3"}


def test_a_restarted_process_still_remembers(tmp_path: Path) -> None:
    m = SqliteDeliveryMemory(tmp_path / "audit.db")
    m.remember(["received:x"], {"ok": True}, now=T0, ttl_seconds=60)
    m.close()
    again = SqliteDeliveryMemory(tmp_path / "audit.db")
    assert again.recall(["received:x"], now=T0) == {"ok": True}
    again.close()


def test_redaction_walks_any_depth_without_recursion() -> None:
    doc: dict[str, object] = {"password": "hunter2", "leaf": "Bearer abcdefghijklmnop"}
    for _ in range(100_000):
        doc = {"a": [doc]}
    out = redact(doc)
    for _ in range(100_000):
        out = out["a"][0]
    assert out == {"password": "[REDACTED]", "leaf": "[REDACTED]"}
