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
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from stanch.audit.side_tables import PostgresSideTables, SqliteSideTables
from stanch.console.sessions import SESSION_SECONDS, Session, digest
from stanch.models import Principal

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


class SqliteSessionStore(SqliteSideTables):
    """A ``console_sessions`` table in the audit SQLite file; writers queue on its lock."""

    def __init__(self, path: str | Path, *, lifetime: float = SESSION_SECONDS,
                 busy_timeout: float = 30.0) -> None:
        self._lifetime = lifetime
        super().__init__(path, busy_timeout=busy_timeout, ddl=(
            "CREATE TABLE IF NOT EXISTS console_sessions (key TEXT PRIMARY KEY, "
            "principal TEXT NOT NULL, csrf TEXT NOT NULL, via TEXT NOT NULL, "
            "expires REAL NOT NULL, flash TEXT NOT NULL DEFAULT '[]')",
            "CREATE TABLE IF NOT EXISTS console_sign_ins (key TEXT PRIMARY KEY, "
            "data TEXT NOT NULL, expires REAL NOT NULL)"))

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


class PostgresSessionStore(PostgresSideTables):
    """The ``console_sessions`` table in the audit schema (created by ``setup-postgres``)."""

    def __init__(self, dsn: str, *, schema: str = "stanch_audit",
                 lifetime: float = SESSION_SECONDS) -> None:
        from stanch.audit.postgres import CONSOLE_SESSIONS_DDL

        self._lifetime = lifetime
        super().__init__(dsn, schema=schema, table="console_sessions",
                         ddl=CONSOLE_SESSIONS_DDL)

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


def open_sessions(settings: Any) -> SessionStore:
    """The console's session store beside the configured audit store."""
    if settings.audit.store == "postgres" and settings.audit.postgres_dsn is not None:
        return PostgresSessionStore(settings.audit.postgres_dsn.get_secret_value(),
                                    schema=settings.audit.postgres_schema)
    return SqliteSessionStore(settings.audit_sqlite_path)
