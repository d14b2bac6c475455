"""The mock IdP's state: identities, memberships, sessions, credentials and a change log.

One SQLite connection per app, in WAL mode, serialised by a lock; writes run in
``BEGIN IMMEDIATE`` transactions so several server processes on one file stay consistent.
Every method that changes state appends one change record per effect, and a call that
changes nothing records nothing. Secrets are generated, returned once, and stored only as
their SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stanch.mock_idp.seed import SEED_IDENTITIES, SEED_TIME
from stanch.sqlite_wal import use_wal

MAX_CREDENTIALS_PER_TYPE = 2
CREDENTIAL_TYPES = ("password", "api_key", "client_secret", "token", "mfa")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, display_name TEXT NOT NULL, upn TEXT,
    status TEXT NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS memberships (
    identity_id TEXT NOT NULL, name TEXT NOT NULL, privileged INTEGER NOT NULL,
    PRIMARY KEY (identity_id, name));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, identity_id TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_identity ON sessions (identity_id);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY, identity_id TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, secret_sha256 TEXT);
CREATE INDEX IF NOT EXISTS credentials_identity ON credentials (identity_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, identity_id TEXT NOT NULL,
    op TEXT NOT NULL, detail TEXT NOT NULL, idempotency_key TEXT);
CREATE INDEX IF NOT EXISTS changes_identity ON changes (identity_id, seq);
CREATE INDEX IF NOT EXISTS changes_key ON changes (idempotency_key);
"""

_CRED_PREFIX = {"password": "pwd", "mfa": "mfa", "client_secret": "cs", "token": "tok"}


class IdpError(Exception):
    """An API error: HTTP status, an AWS-style code, and a message naming ids only."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _new_credential_id(identity_id: str, ctype: str) -> str:
    if ctype == "api_key":
        alphabet = string.ascii_uppercase + string.digits
        return "AKIAMOCK" + "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{_CRED_PREFIX.get(ctype, 'cred')}-{identity_id}-{secrets.token_hex(4)}"


class Store:
    """All state access. Safe to share between threads; each method is one transaction."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(db_path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------ seed and reset

    def seed_if_empty(self) -> bool:
        """Seed the demo identities unless this database was seeded before."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
                return False
            self._insert_seed(db)
            return True

    def reset(self, *, seed: bool = True) -> None:
        """Drop every identity and change, then restore the seed state (for tests)."""
        with self._write() as db:
            for table in ("identities", "memberships", "sessions", "credentials", "changes",
                          "meta"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'changes'")
            if seed:
                self._insert_seed(db)

    def create_identity(self, ident: dict[str, Any]) -> dict[str, Any]:
        """Add one identity in the seed's shape (for tests that need many); 409 if it exists.

        Creation is set-up, not an effect of containment: it records no change."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM identities WHERE id = ?", (ident["id"],)).fetchone():
                raise IdpError(409, "EntityAlreadyExists",
                               f"identity {ident['id']!r} already exists")
            self._insert_identities(db, [ident])
            return self._state(db, ident["id"])

    @staticmethod
    def _insert_seed(db: sqlite3.Connection) -> None:
        Store._insert_identities(db, SEED_IDENTITIES)
        db.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (_now(),))

    @staticmethod
    def _insert_identities(db: sqlite3.Connection, identities: list[dict[str, Any]]) -> None:
        for ident in identities:
            db.execute(
                "INSERT INTO identities (id, kind, display_name, upn, status)"
                " VALUES (?, ?, ?, ?, 'active')",
                (ident["id"], ident["kind"], ident["display_name"], ident["upn"]),
            )
            db.executemany(
                "INSERT INTO memberships (identity_id, name, privileged) VALUES (?, ?, ?)",
                [(ident["id"], name, int(priv)) for name, priv in ident["groups"]],
            )
            db.executemany(
                "INSERT INTO sessions (id, identity_id, created_at) VALUES (?, ?, ?)",
                [(sid, ident["id"], SEED_TIME) for sid in ident["sessions"]],
            )
            db.executemany(
                "INSERT INTO credentials (id, identity_id, type, status, created_at)"
                " VALUES (?, ?, ?, 'active', ?)",
                [(cid, ident["id"], ctype, SEED_TIME) for cid, ctype in ident["credentials"]],
            )

    # ------------------------------------------------------------------ reads

    def list_identities(self) -> list[dict[str, Any]]:
        with self._read() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM identities ORDER BY id")]
            return [self._state(db, i) for i in ids]

    def identity(self, identity_id: str) -> dict[str, Any]:
        with self._read() as db:
            return self._state(db, identity_id)

    def changes(
        self,
        *,
        since: int = 0,
        identity_id: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM changes WHERE seq > ?"
        args: list[Any] = [since]
        if identity_id is not None:
            sql += " AND identity_id = ?"
            args.append(identity_id)
        if idempotency_key is not None:
            sql += " AND idempotency_key = ?"
            args.append(idempotency_key)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._read() as db:
            return [
                {
                    "seq": r["seq"],
                    "at": r["at"],
                    "identity_id": r["identity_id"],
                    "op": r["op"],
                    "detail": json.loads(r["detail"]),
                    "idempotency_key": r["idempotency_key"],
                }
                for r in db.execute(sql, args)
            ]

    @staticmethod
    def _state(db: sqlite3.Connection, identity_id: str) -> dict[str, Any]:
        row = db.execute(
            "SELECT id, kind, display_name, upn, status FROM identities WHERE id = ?",
            (identity_id,),
        ).fetchone()
        if row is None:
            raise IdpError(404, "NoSuchEntity", f"identity {identity_id!r} does not exist")
        return {
            "id": row["id"],
            "kind": row["kind"],
            "display_name": row["display_name"],
            "upn": row["upn"],
            "status": row["status"],
            "groups": [
                {"name": r["name"], "privileged": bool(r["privileged"])}
                for r in db.execute(
                    "SELECT name, privileged FROM memberships WHERE identity_id = ?"
                    " ORDER BY name",
                    (identity_id,),
                )
            ],
            "sessions": [
                {"id": r["id"], "created_at": r["created_at"]}
                for r in db.execute(
                    "SELECT id, created_at FROM sessions WHERE identity_id = ?"
                    " ORDER BY created_at, id",
                    (identity_id,),
                )
            ],
            "credentials": [
                {"id": r["id"], "type": r["type"], "status": r["status"],
                 "created_at": r["created_at"]}
                for r in db.execute(
                    "SELECT id, type, status, created_at FROM credentials"
                    " WHERE identity_id = ? ORDER BY created_at, id",
                    (identity_id,),
                )
            ],
        }

    # ------------------------------------------------------------------ writes

    @staticmethod
    def _require(db: sqlite3.Connection, identity_id: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT id, status FROM identities WHERE id = ?", (identity_id,)
        ).fetchone()
        if row is None:
            raise IdpError(404, "NoSuchEntity", f"identity {identity_id!r} does not exist")
        return row

    @staticmethod
    def _credential(db: sqlite3.Connection, identity_id: str, credential_id: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT id, type, status, created_at FROM credentials"
            " WHERE id = ? AND identity_id = ?",
            (credential_id, identity_id),
        ).fetchone()
        if row is None:
            raise IdpError(
                404, "NoSuchCredential",
                f"credential {credential_id!r} does not exist on identity {identity_id!r}",
            )
        return row

    @staticmethod
    def _record(db: sqlite3.Connection, identity_id: str, op: str, detail: dict[str, Any],
                key: str | None) -> int:
        cur = db.execute(
            "INSERT INTO changes (at, identity_id, op, detail, idempotency_key)"
            " VALUES (?, ?, ?, ?, ?)",
            (_now(), identity_id, op, json.dumps(detail, sort_keys=True), key),
        )
        return int(cur.lastrowid or 0)

    def remove_groups(self, identity_id: str, names: list[str], key: str | None
                      ) -> dict[str, Any]:
        removed: list[dict[str, Any]] = []
        with self._write() as db:
            self._require(db, identity_id)
            for name in dict.fromkeys(names):
                row = db.execute(
                    "SELECT privileged FROM memberships WHERE identity_id = ? AND name = ?",
                    (identity_id, name),
                ).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM memberships WHERE identity_id = ? AND name = ?",
                           (identity_id, name))
                member = {"name": name, "privileged": bool(row["privileged"])}
                self._record(db, identity_id, "group.remove", member, key)
                removed.append(member)
        return {"changed": bool(removed), "removed": removed}

    def add_groups(self, identity_id: str, groups: list[tuple[str, bool]], key: str | None
                   ) -> dict[str, Any]:
        added: list[dict[str, Any]] = []
        with self._write() as db:
            self._require(db, identity_id)
            for name, privileged in groups:
                cur = db.execute(
                    "INSERT OR IGNORE INTO memberships (identity_id, name, privileged)"
                    " VALUES (?, ?, ?)",
                    (identity_id, name, int(privileged)),
                )
                if cur.rowcount:
                    member = {"name": name, "privileged": privileged}
                    self._record(db, identity_id, "group.add", member, key)
                    added.append(member)
        return {"changed": bool(added), "added": added}

    def revoke_sessions(self, identity_id: str, key: str | None) -> dict[str, Any]:
        with self._write() as db:
            self._require(db, identity_id)
            sessions = [{"id": r["id"], "created_at": r["created_at"]} for r in db.execute(
                "SELECT id, created_at FROM sessions WHERE identity_id = ?"
                " ORDER BY created_at, id",
                (identity_id,),
            )]
            ids = [s["id"] for s in sessions]
            if ids:
                db.execute("DELETE FROM sessions WHERE identity_id = ?", (identity_id,))
                self._record(db, identity_id, "sessions.revoke",
                             {"session_ids": ids, "sessions": sessions}, key)
        return {"changed": bool(ids), "revoked": ids}

    def set_identity_status(self, identity_id: str, status: str, key: str | None
                            ) -> dict[str, Any]:
        with self._write() as db:
            row = self._require(db, identity_id)
            changed = row["status"] != status
            if changed:
                db.execute("UPDATE identities SET status = ? WHERE id = ?", (status, identity_id))
                op = "identity.disable" if status == "disabled" else "identity.enable"
                self._record(db, identity_id, op, {"from": row["status"], "to": status}, key)
        return {"changed": changed, "status": status}

    def set_credential_status(self, identity_id: str, credential_id: str, status: str,
                              key: str | None) -> dict[str, Any]:
        with self._write() as db:
            self._require(db, identity_id)
            row = self._credential(db, identity_id, credential_id)
            changed = row["status"] != status
            if changed:
                db.execute("UPDATE credentials SET status = ? WHERE id = ?",
                           (status, credential_id))
                op = "credential.activate" if status == "active" else "credential.deactivate"
                self._record(db, identity_id, op,
                             {"credential_id": credential_id, "type": row["type"]}, key)
        return {"changed": changed, "credential_id": credential_id, "status": status}

    def delete_credential(self, identity_id: str, credential_id: str, key: str | None
                          ) -> dict[str, Any]:
        with self._write() as db:
            self._require(db, identity_id)
            row = self._credential(db, identity_id, credential_id)
            if row["status"] == "active":
                raise IdpError(
                    409, "CredentialActive",
                    f"credential {credential_id!r} is active; deactivate it before deleting",
                )
            db.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
            self._record(db, identity_id, "credential.delete",
                         {"credential_id": credential_id, "type": row["type"]}, key)
        return {"changed": True, "deleted": credential_id}

    def rotate_credential(self, identity_id: str, credential_id: str | None,
                          credential_type: str | None, key: str | None) -> dict[str, Any]:
        """Issue a new credential of the same type and deactivate the old one.

        The new secret is in the returned dict and nowhere else. A repeated call with the
        same idempotency key replays the first result (without the secret) instead of
        rotating twice.
        """
        with self._write() as db:
            self._require(db, identity_id)
            if key is not None:
                prior = db.execute(
                    "SELECT detail FROM changes WHERE identity_id = ? AND op = 'credential.rotate'"
                    " AND idempotency_key = ? ORDER BY seq LIMIT 1",
                    (identity_id, key),
                ).fetchone()
                if prior is not None:
                    return {"changed": False, "replayed": True, "secret": None,
                            **json.loads(prior["detail"])}
            old = self._rotation_source(db, identity_id, credential_id, credential_type)
            ctype = old["type"]
            count = db.execute(
                "SELECT COUNT(*) FROM credentials WHERE identity_id = ? AND type = ?",
                (identity_id, ctype),
            ).fetchone()[0]
            if count >= MAX_CREDENTIALS_PER_TYPE:
                raise IdpError(
                    409, "LimitExceeded",
                    f"identity {identity_id!r} already has {count} {ctype} credentials "
                    f"(limit {MAX_CREDENTIALS_PER_TYPE}); delete an inactive one first",
                )
            new_id = _new_credential_id(identity_id, ctype)
            secret = secrets.token_urlsafe(32)
            db.execute(
                "INSERT INTO credentials (id, identity_id, type, status, created_at,"
                " secret_sha256) VALUES (?, ?, ?, 'active', ?, ?)",
                (new_id, identity_id, ctype, _now(), hashlib.sha256(secret.encode()).hexdigest()),
            )
            db.execute("UPDATE credentials SET status = 'inactive' WHERE id = ?", (old["id"],))
            detail = {"old_credential_id": old["id"], "new_credential_id": new_id,
                      "type": ctype, "old_status": old["status"]}
            self._record(db, identity_id, "credential.rotate", detail, key)
        return {"changed": True, "replayed": False, "secret": secret, **detail}

    def _rotation_source(self, db: sqlite3.Connection, identity_id: str,
                         credential_id: str | None, credential_type: str | None) -> sqlite3.Row:
        if credential_id is not None:
            return self._credential(db, identity_id, credential_id)
        sql = ("SELECT id, type, status, created_at FROM credentials"
               " WHERE identity_id = ? AND status = 'active'")
        args: list[Any] = [identity_id]
        if credential_type is not None:
            sql += " AND type = ?"
            args.append(credential_type)
        else:
            sql += " AND type != 'mfa'"
        row = db.execute(sql + " ORDER BY created_at, id LIMIT 1", args).fetchone()
        if row is None:
            what = f"{credential_type} credential" if credential_type else "credential"
            raise IdpError(409, "NoActiveCredential",
                           f"identity {identity_id!r} has no active {what} to rotate")
        return row
