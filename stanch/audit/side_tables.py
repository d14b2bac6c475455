"""Tables that live beside the audit chain, in the same database, for every API process.

The delivery memory (:mod:`stanch.audit.deliveries`) and the console's sessions
(:mod:`stanch.console.session_db`) keep small tables in the audit database so that every
API process, and a restarted one, sees the same rows. They share how they reach it:

- SQLite: one connection per process, a thread lock for it, and writers queue on the audit
  file's OS lock (``audit.db.lock``) before ``BEGIN IMMEDIATE``, as the chain's own writer
  does, instead of SQLite's sleeping busy handler;
- PostgreSQL: one autocommit connection in the audit schema, reopened when it broke; the
  tables are created by ``stanch audit setup-postgres``, or at first start under the
  schema's advisory lock when the role may.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: AbstractContextManager[Any],
                      writer_fd: int) -> Iterator[sqlite3.Connection]:
    """One write transaction on the audit SQLite file: this process's connection under its
    thread lock, every process queued on the file's OS lock, then ``BEGIN IMMEDIATE``."""
    with lock:
        if fcntl is not None:
            fcntl.flock(writer_fd, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if fcntl is not None:
                fcntl.flock(writer_fd, fcntl.LOCK_UN)


class SqliteSideTables:
    """A connection to the audit SQLite file for side tables; ``ddl`` runs once at open."""

    def __init__(self, path: str | Path, *, ddl: Sequence[str],
                 busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._lock = threading.Lock()
        self._writer_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._pruned = 0.0
        with self._write() as conn:
            for stmt in ddl:
                conn.execute(stmt)

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock, self._writer_fd)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            os.close(self._writer_fd)


class PostgresSideTables:
    """An autocommit connection in the audit schema; ``table`` is created from ``ddl`` when
    missing (statements separated by ``;\\n``), or start-up stops saying how to fix it."""

    def __init__(self, dsn: str, *, schema: str, table: str, ddl: str) -> None:
        import psycopg
        from psycopg import sql

        self._psycopg = psycopg
        self._dsn = dsn
        self._schema = schema
        self._sql = sql
        self._lock = threading.Lock()
        self._pruned = 0.0
        self._conn = self._connect()
        row = self._conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if row is None or row[0] is None:
            from stanch.audit.base import AuditError
            from stanch.audit.postgres import _lock_id

            try:
                with self._conn.transaction():
                    # Several API processes starting together: one creates, the rest wait.
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(schema),))
                    for stmt in ddl.split(";\n"):
                        self._conn.execute(stmt)
            except psycopg.Error as err:
                raise AuditError(
                    f"the {table} table is missing in PostgreSQL schema {schema!r} and "
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

    def close(self) -> None:
        with self._lock:
            self._conn.close()
