"""SSF state in one SQLite file (``<state_dir>/ssf.db``), shared by the API and the worker.

Transmitter: ``streams`` (what receivers configured) and ``queue`` (every SET made for a
stream, in order: pending → delivered/acked, or failed with the last error). A SET's
``jti`` is derived from the stream and the audit record it announces, and (stream, jti)
is unique, so announcing the same record twice queues it once.
Receiver: ``received`` (each ``jti`` seen, for deduplication) and ``remote`` (the streams
Stanch created at transmitters, with their pending verification ``state``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stanch.sqlite_wal import use_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'enabled', reason TEXT,
    created_at REAL NOT NULL, verified_at REAL
);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, jti TEXT NOT NULL,
    event_type TEXT NOT NULL, token TEXT NOT NULL, created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, done_at REAL, UNIQUE (stream_id, jti)
);
CREATE INDEX IF NOT EXISTS queue_pending ON queue (stream_id, state, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS received (
    transmitter TEXT NOT NULL, jti TEXT NOT NULL, at REAL NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (transmitter, jti)
);
CREATE INDEX IF NOT EXISTS received_at ON received (at);
CREATE TABLE IF NOT EXISTS remote (
    name TEXT PRIMARY KEY, stream_id TEXT, config TEXT NOT NULL DEFAULT '{}',
    status TEXT, state TEXT, verified_at REAL, updated_at REAL NOT NULL
);
"""

PENDING, DELIVERED, ACKED, FAILED = "pending", "delivered", "acked", "failed"


@dataclass(frozen=True)
class Stream:
    stream_id: str
    owner: str
    config: dict[str, Any]
    status: str
    reason: str | None
    verified_at: float | None


@dataclass(frozen=True)
class Queued:
    seq: int
    stream_id: str
    jti: str
    event_type: str
    token: str
    state: str
    attempts: int
    last_error: str | None


class SsfStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        use_wal(self._db)
        # No fsync per commit (WAL: at checkpoints). A power cut may undo the last commits,
        # and undoes them together: the emitter's cursor lives here with the queue, so it
        # announces those records again (jtis are derived: nothing twice), and a SET whose
        # "delivered" mark is undone is sent again (receivers deduplicate by jti).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes, one commit (this thread holds the store meanwhile)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # ---------------------------------------------------------------- streams
    def create_stream(self, stream_id: str, owner: str, config: dict[str, Any]) -> None:
        self._x("INSERT INTO streams (stream_id, owner, config, created_at) VALUES (?,?,?,?)",
                (stream_id, owner, json.dumps(config), time.time()))

    def stream(self, stream_id: str) -> Stream | None:
        rows = self._q("SELECT stream_id, owner, config, status, reason, verified_at "
                       "FROM streams WHERE stream_id = ?", (stream_id,))
        return _stream(rows[0]) if rows else None

    def streams(self, owner: str | None = None) -> list[Stream]:
        sql = "SELECT stream_id, owner, config, status, reason, verified_at FROM streams"
        rows = self._q(sql + " WHERE owner = ? ORDER BY created_at", (owner,)) if owner \
            else self._q(sql + " ORDER BY created_at")
        return [_stream(r) for r in rows]

    def update_stream(self, stream_id: str, config: dict[str, Any]) -> None:
        self._x("UPDATE streams SET config = ? WHERE stream_id = ?",
                (json.dumps(config), stream_id))

    def set_status(self, stream_id: str, status: str, reason: str | None) -> None:
        self._x("UPDATE streams SET status = ?, reason = ? WHERE stream_id = ?",
                (status, reason, stream_id))

    def mark_verified(self, stream_id: str) -> None:
        self._x("UPDATE streams SET verified_at = ? WHERE stream_id = ?",
                (time.time(), stream_id))

    def delete_stream(self, stream_id: str) -> bool:
        with self._lock:
            n = self._db.execute("DELETE FROM streams WHERE stream_id = ?",
                                 (stream_id,)).rowcount
            self._db.execute("DELETE FROM queue WHERE stream_id = ?", (stream_id,))
        return n > 0

    # ---------------------------------------------------------------- queue
    def enqueue(self, stream_id: str, jti: str, event_type: str, token: str) -> bool:
        """Queue one SET; False when this (stream, jti) was queued before."""
        return self._x("INSERT OR IGNORE INTO queue (stream_id, jti, event_type, token, "
                       "created_at) VALUES (?,?,?,?,?)",
                       (stream_id, jti, event_type, token, time.time())) > 0

    def enqueue_all(self, sets: list[tuple[str, str, str, str]]) -> None:
        """Queue (stream_id, jti, event_type, token) rows in one transaction; a (stream, jti)
        queued before is left as it was."""
        if not sets:
            return
        with self.transaction():
            for stream_id, jti, event_type, token in sets:
                self.enqueue(stream_id, jti, event_type, token)

    def pending(self, stream_id: str, limit: int = 100) -> list[Queued]:
        rows = self._q("SELECT seq, stream_id, jti, event_type, token, state, attempts, "
                       "last_error FROM queue WHERE stream_id = ? AND state IN (?, ?) "
                       "ORDER BY seq LIMIT ?", (stream_id, PENDING, FAILED, limit))
        return [Queued(*r) for r in rows]

    def pending_top(self, stream_id: str) -> int | None:
        """The newest undelivered SET's seq (None: nothing waits)."""
        rows = self._q("SELECT MAX(seq) FROM queue WHERE stream_id = ? AND state IN (?, ?)",
                       (stream_id, PENDING, FAILED))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def get(self, stream_id: str, jti: str) -> Queued | None:
        rows = self._q("SELECT seq, stream_id, jti, event_type, token, state, attempts, "
                       "last_error FROM queue WHERE stream_id = ? AND jti = ?",
                       (stream_id, jti))
        return Queued(*rows[0]) if rows else None

    def mark(self, stream_id: str, jtis: list[str], state: str, error: str | None = None
             ) -> int:
        n = 0
        with self.transaction():
            for jti in jtis:
                n += self._x("UPDATE queue SET state = ?, last_error = ?, done_at = ? "
                             "WHERE stream_id = ? AND jti = ? AND state IN (?, ?)",
                             (state, error, time.time(), stream_id, jti, PENDING, FAILED))
        return n

    def attempt_failed(self, stream_id: str, jti: str, error: str) -> None:
        self._x("UPDATE queue SET state = ?, attempts = attempts + 1, last_error = ? "
                "WHERE stream_id = ? AND jti = ? AND state IN (?, ?)",
                (FAILED, error[:500], stream_id, jti, PENDING, FAILED))

    def counts(self, stream_id: str) -> dict[str, int]:
        rows = self._q("SELECT state, COUNT(*) FROM queue WHERE stream_id = ? GROUP BY state",
                       (stream_id,))
        return {state: n for state, n in rows}

    def last_error(self, stream_id: str) -> str | None:
        rows = self._q("SELECT last_error FROM queue WHERE stream_id = ? AND state = ? "
                       "ORDER BY seq LIMIT 1", (stream_id, FAILED))
        return rows[0][0] if rows else None

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str = "") -> str:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: str) -> None:
        self._x("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value", (key, value))

    # ---------------------------------------------------------------- receiver
    def seen(self, transmitter: str, jti: str) -> str | None:
        rows = self._q("SELECT outcome FROM received WHERE transmitter = ? AND jti = ?",
                       (transmitter, jti))
        return str(rows[0][0]) if rows else None

    def remember(self, transmitter: str, jti: str, outcome: str) -> None:
        self._x("INSERT OR REPLACE INTO received (transmitter, jti, at, outcome) "
                "VALUES (?,?,?,?)", (transmitter, jti, time.time(), outcome))

    def forget_seen(self, before: float) -> int:
        """Forget the jtis received before ``before`` (Unix time); returns how many."""
        return self._x("DELETE FROM received WHERE at < ?", (before,))

    def remote(self, name: str) -> dict[str, Any]:
        rows = self._q("SELECT stream_id, config, status, state, verified_at FROM remote "
                       "WHERE name = ?", (name,))
        if not rows:
            return {}
        sid, config, status, state, verified = rows[0]
        return {"stream_id": sid, "config": json.loads(config), "status": status,
                "state": state, "verified_at": verified}

    def save_remote(self, name: str, **fields: Any) -> None:
        current = self.remote(name) or {"stream_id": None, "config": {}, "status": None,
                                        "state": None, "verified_at": None}
        current.update(fields)
        self._x("INSERT OR REPLACE INTO remote (name, stream_id, config, status, state, "
                "verified_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (name, current["stream_id"], json.dumps(current["config"]),
                 current["status"], current["state"], current["verified_at"], time.time()))


def _stream(r: tuple[Any, ...]) -> Stream:
    return Stream(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5])
