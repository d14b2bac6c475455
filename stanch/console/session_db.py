"""Console sessions kept in the audit database, so every API process knows every session.

Behind a load balancer the next request may reach another API process: a session signed in
on one must work on the other, and a logout or an expiry on one must end it everywhere.
Like the delivery memory (:mod:`stanch.audit.deliveries`), sessions live in their own table
beside the audit chain (SQLite by default, PostgreSQL at scale). A row holds only the
SHA-256 of the session id (the cookie's value is never stored), the principal, the CSRF
secret, how it signed in, when it ends, and messages waiting for the next page. An OpenID
sign-in begun on one process may come back to another, so what it needs to finish (the
PKCE verifier, the nonce) is parked here too, under the digest of its state, for at most
ten minutes and claimed once.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from stanch.console.sessions import SESSION_SECONDS, Session, digest
from stanch.models import Principal

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_PRUNE_EVERY_SECONDS = 60.0


class SessionStore(Protocol):
    def create(self, principal: Principal, via: str) -> tuple[str, Session]: ...
    def get(self, sid: str | None) -> Session | None: ...
    def end(self, sid: str | None) -> None: ...
    def say(self, session: Session, kind: str, text: str) -> None: ...
    def take_flash(self, session: Session) -> list[tuple[str, str]]: ...
    def park(self, state: str, data: dict[str, Any], ttl: float) -> None: ...
    def claim(self, state: str) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


def _new(principal: Principal, via: str, lifetime: float) -> tuple[str, Session]:
    sid = secrets.token_urlsafe(32)
    return sid, Session(principal=principal, csrf=secrets.token_urlsafe(32),
                        expires=time.time() + lifetime, via=via, key=digest(sid))


def _row(key: str, row: Any, store: SessionStore) -> Session:
    principal, csrf, via, expires, flash = row
    if isinstance(expires, datetime):
        expires = expires.timestamp()
    return Session(principal=Principal.model_validate_json(principal), csrf=csrf,
                   expires=float(expires), via=via, key=key,
                   flash=[(k, t) for k, t in json.loads(flash or "[]")], store=store)


class SqliteSessionStore:
    """A ``console_sessions`` table in the audit SQLite file; writers queue on its lock."""

    def __init__(self, path: str | Path, *, lifetime: float = SESSION_SECONDS,
                 busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lifetime = lifetime
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._lock = threading.Lock()
        self._writer_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._pruned = 0.0
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS console_sessions (key TEXT PRIMARY KEY, "
                         "principal TEXT NOT NULL, csrf TEXT NOT NULL, via TEXT NOT NULL, "
                         "expires REAL NOT NULL, flash TEXT NOT NULL DEFAULT '[]')")
            conn.execute("CREATE TABLE IF NOT EXISTS console_sign_ins (key TEXT PRIMARY KEY, "
                         "data TEXT NOT NULL, expires REAL NOT NULL)")

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

    def create(self, principal: Principal, via: str) -> tuple[str, Session]:
        sid, s = _new(principal, via, self._lifetime)
        s.store = self
        with self._write() as conn:
            conn.execute("INSERT INTO console_sessions (key, principal, csrf, via, expires, flash) "
                         "VALUES (?, ?, ?, ?, ?, '[]')",
                         (s.key, s.principal.model_dump_json(), s.csrf, via, s.expires))
            if time.monotonic() - self._pruned > _PRUNE_EVERY_SECONDS:
                conn.execute("DELETE FROM console_sessions WHERE expires < ?", (time.time(),))
                self._pruned = time.monotonic()
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        key = digest(sid)
        with self._lock:
            row = self._conn.execute(
                "SELECT principal, csrf, via, expires, flash FROM console_sessions "
                "WHERE key = ? AND expires >= ?", (key, time.time())).fetchone()
        return _row(key, row, self) if row else None

    def end(self, sid: str | None) -> None:
        if sid and len(sid) <= 200:
            with self._write() as conn:
                conn.execute("DELETE FROM console_sessions WHERE key = ?", (digest(sid),))

    def say(self, session: Session, kind: str, text: str) -> None:
        session.flash.append((kind, text))
        with self._write() as conn:
            row = conn.execute("SELECT flash FROM console_sessions WHERE key = ?",
                               (session.key,)).fetchone()
            if row:
                kept = [*json.loads(row[0]), [kind, text]]
                conn.execute("UPDATE console_sessions SET flash = ? WHERE key = ?",
                             (json.dumps(kept), session.key))

    def take_flash(self, session: Session) -> list[tuple[str, str]]:
        if not session.flash:  # as read with the session: nothing to clear
            return []
        with self._write() as conn:
            row = conn.execute("SELECT flash FROM console_sessions WHERE key = ?",
                               (session.key,)).fetchone()
            conn.execute("UPDATE console_sessions SET flash = '[]' WHERE key = ?",
                         (session.key,))
        session.flash = []
        return [(k, t) for k, t in json.loads(row[0])] if row else []

    def park(self, state: str, data: dict[str, Any], ttl: float) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute("DELETE FROM console_sign_ins WHERE expires < ?", (now,))
            conn.execute("INSERT INTO console_sign_ins (key, data, expires) VALUES (?, ?, ?)",
                         (digest(state), json.dumps(data), now + ttl))

    def claim(self, state: str) -> dict[str, Any] | None:
        if not state or len(state) > 200:
            return None
        with self._write() as conn:
            row = conn.execute("DELETE FROM console_sign_ins WHERE key = ? AND expires >= ? "
                               "RETURNING data", (digest(state), time.time())).fetchone()
        return dict(json.loads(row[0])) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            os.close(self._writer_fd)


class PostgresSessionStore:
    """The ``console_sessions`` table in the audit schema (created by ``setup-postgres``)."""

    def __init__(self, dsn: str, *, schema: str = "stanch_audit",
                 lifetime: float = SESSION_SECONDS) -> None:
        import psycopg
        from psycopg import sql

        self._psycopg = psycopg
        self._dsn = dsn
        self._schema = schema
        self._sql = sql
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._pruned = 0.0
        self._conn = self._connect()
        row = self._conn.execute("SELECT to_regclass('console_sessions')").fetchone()
        if row is None or row[0] is None:
            from stanch.audit.base import AuditError
            from stanch.audit.postgres import CONSOLE_SESSIONS_DDL, _lock_id

            try:
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(schema),))
                    for stmt in CONSOLE_SESSIONS_DDL.split(";\n"):
                        self._conn.execute(stmt)
            except psycopg.Error as err:
                raise AuditError(
                    f"the console_sessions table is missing in PostgreSQL schema {schema!r} "
                    f"and could not be created ({err.__class__.__name__}); run `stanch audit "
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

    def create(self, principal: Principal, via: str) -> tuple[str, Session]:
        sid, s = _new(principal, via, self._lifetime)
        s.store = self
        expires = datetime.fromtimestamp(s.expires, UTC)
        with self._lock:
            conn = self._c()
            conn.execute("INSERT INTO console_sessions (key, principal, csrf, via, expires, flash) "
                         "VALUES (%s, %s, %s, %s, %s, '[]')",
                         (s.key, s.principal.model_dump_json(), s.csrf, via, expires))
            if time.monotonic() - self._pruned > _PRUNE_EVERY_SECONDS:
                conn.execute("DELETE FROM console_sessions WHERE expires < now()")
                self._pruned = time.monotonic()
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 200:
            return None
        key = digest(sid)
        with self._lock:
            row = self._c().execute(
                "SELECT principal, csrf, via, expires, flash FROM console_sessions "
                "WHERE key = %s AND expires >= %s", (key, datetime.now(UTC))).fetchone()
        return _row(key, row, self) if row else None

    def end(self, sid: str | None) -> None:
        if sid and len(sid) <= 200:
            with self._lock:
                self._c().execute("DELETE FROM console_sessions WHERE key = %s", (digest(sid),))

    def say(self, session: Session, kind: str, text: str) -> None:
        session.flash.append((kind, text))
        with self._lock:
            self._c().execute(
                "UPDATE console_sessions SET flash = (flash::jsonb || %s::jsonb)::text "
                "WHERE key = %s", (json.dumps([[kind, text]]), session.key))

    def take_flash(self, session: Session) -> list[tuple[str, str]]:
        if not session.flash:
            return []
        with self._lock:
            conn = self._c()
            with conn.transaction():
                row = conn.execute("SELECT flash FROM console_sessions WHERE key = %s "
                                   "FOR UPDATE", (session.key,)).fetchone()
                conn.execute("UPDATE console_sessions SET flash = '[]' WHERE key = %s",
                             (session.key,))
        session.flash = []
        return [(k, t) for k, t in json.loads(row[0])] if row else []

    def park(self, state: str, data: dict[str, Any], ttl: float) -> None:
        now = datetime.now(UTC)
        with self._lock:
            conn = self._c()
            conn.execute("DELETE FROM console_sign_ins WHERE expires < %s", (now,))
            conn.execute("INSERT INTO console_sign_ins (key, data, expires) "
                         "VALUES (%s, %s, %s)", (digest(state), json.dumps(data),
                                                 datetime.fromtimestamp(now.timestamp() + ttl,
                                                                        UTC)))

    def claim(self, state: str) -> dict[str, Any] | None:
        if not state or len(state) > 200:
            return None
        with self._lock:
            row = self._c().execute(
                "DELETE FROM console_sign_ins WHERE key = %s AND expires >= %s RETURNING data",
                (digest(state), datetime.now(UTC))).fetchone()
        return dict(json.loads(row[0])) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_sessions(settings: Any) -> SessionStore:
    """The console's session store beside the configured audit store."""
    if settings.audit.store == "postgres" and settings.audit.postgres_dsn is not None:
        return PostgresSessionStore(settings.audit.postgres_dsn.get_secret_value(),
                                    schema=settings.audit.postgres_schema)
    return SqliteSessionStore(settings.audit_sqlite_path)
