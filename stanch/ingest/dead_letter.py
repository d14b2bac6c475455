"""Dead letters: deliveries that authenticated but could not be normalized.

Nothing a SIEM sent is lost: the body is kept (with secrets masked) with the reason, so an
operator can fix the mapping and replay it. SQLite file under ``state_dir``; bounded.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stanch.config import Settings
from stanch.redact import redact, redact_text
from stanch.sqlite_wal import use_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class DeadLetter:
    id: str
    source: str
    received_at: datetime
    reason: str
    headers: dict[str, str]
    body: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "received_at": self.received_at.isoformat(),
            "reason": self.reason,
            "size": len(self.body),
        }


def mask_body(body: bytes) -> bytes:
    """The body with secrets masked: by key when it is JSON, by pattern otherwise."""
    try:
        doc = json.loads(body)
        return json.dumps(redact(doc), separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the encoder goes: mask it as text.
        try:
            return redact_text(body.decode("utf-8")).encode()
        except UnicodeDecodeError:
            return body


class DeadLetterStore:
    """``put`` / ``list`` / ``get`` over one SQLite file; keeps the newest ``max_rows``."""

    def __init__(self, path: Path | str, *, max_rows: int = 10_000) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    @classmethod
    def for_settings(cls, settings: Settings) -> DeadLetterStore:
        return cls(settings.state_dir / "dead_letter.db")

    def put(
        self,
        source: str,
        headers_redacted: dict[str, str],
        body: bytes,
        reason: str,
        received_at: datetime,
    ) -> str:
        dl_id = f"dl-{uuid.uuid4().hex[:20]}"
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters (id, source, received_at, reason, headers, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (dl_id, source, received_at.isoformat(), reason,
                 json.dumps(redact(headers_redacted)), mask_body(body)),
            )
            self._db.execute(
                "DELETE FROM dead_letters WHERE seq <= "
                "(SELECT MAX(seq) FROM dead_letters) - ?",
                (self.max_rows,),
            )
        return dl_id

    def list(self, limit: int = 50) -> list[DeadLetter]:
        """Newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, source, received_at, reason, headers, body FROM dead_letters "
                "ORDER BY seq DESC LIMIT ?",
                (max(0, limit),),
            ).fetchall()
        return [_row(r) for r in rows]

    def get(self, dl_id: str) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, source, received_at, reason, headers, body FROM dead_letters "
                "WHERE id = ?",
                (dl_id,),
            ).fetchone()
        return _row(row) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(r: tuple[Any, ...]) -> DeadLetter:
    return DeadLetter(
        id=r[0], source=r[1], received_at=datetime.fromisoformat(r[2]), reason=r[3],
        headers=json.loads(r[4]), body=bytes(r[5]),
    )
