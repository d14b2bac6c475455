"""Secrets in an event never reach storage: scan the SQLite file bytes and PostgreSQL rows."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from stanch.audit import AuditStore, SqliteAuditStore
from stanch.models import AuditType

from .helpers import event, pg_dsn_of

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BEARER = "Bearer abcDEF123456789ghiJKL"
PASSWORD = "hunter2-correct-horse"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
SECRETS = [AWS_SECRET, BEARER.split()[1], PASSWORD, WHSEC, JWT]


def _seed(store: AuditStore) -> None:
    store.append(event(
        1, type=AuditType.alert_received,
        reason=f"leaked key {AWS_SECRET} seen with Authorization: {BEARER}",
        data={"password": PASSWORD, "webhook": {"secret": WHSEC}, "note": f"token was {JWT}",
              "raw": [f"aws_secret_access_key={AWS_SECRET}", {"password": PASSWORD}],
              "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
        ticket=f"INC-1 {WHSEC}",
        dedup_key=f"alert:{JWT}",
    ))


def _stored_bytes(store: AuditStore) -> bytes:
    if isinstance(store, SqliteAuditStore):
        store.close()  # flush WAL into the file so its bytes are the whole truth
        data = b"".join(p.read_bytes() for p in Path(store.path).parent.iterdir()
                        if p.name.startswith("audit.db"))
        return data
    with psycopg.connect(pg_dsn_of(store)) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(
            sql.Identifier(store.schema)))  # type: ignore[attr-defined]
        rows = conn.execute("SELECT r::text FROM audit_records r").fetchall()
        rows += conn.execute("SELECT o::text FROM audit_outbox o").fetchall()
    return "\n".join(r[0] for r in rows).encode()


def test_no_secret_is_stored(store: AuditStore) -> None:
    _seed(store)
    rec = store.get(1)
    assert rec is not None and rec.data["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
    assert rec.data["password"] == "[REDACTED]"
    assert store.find(f"alert:{JWT}") == rec  # the key still works, stored as a digest
    blob = _stored_bytes(store)
    assert b"AKIAIOSFODNN7EXAMPLE" in blob  # identifiers survive: we scanned the right bytes
    for secret in SECRETS:
        assert secret.encode() not in blob, f"secret stored: {secret[:8]}…"


def test_the_one_scan_finds_whatever_a_pattern_would() -> None:
    """``redact_text`` skips the substitutions when one combined scan finds nothing: that
    scan must match wherever any single pattern does (flags kept per pattern)."""
    from stanch.redact import _ANY, _PATTERNS, redact_text

    samples = [*SECRETS, f"aws_secret_access_key={AWS_SECRET}", "PASSWORD=x1", "bearer " + "A" * 9,
               "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
               "xoxb-1234567890-abc", "ghp_" + "a" * 20, "hvs." + "b" * 24,
               "nothing to see", "user@example.com", "AKIAIOSFODNN7EXAMPLE", ""]
    for text in samples:
        for framed in (text, f"before {text} after", f"{text}\n{text}"):
            hit = any(p.search(framed) for p in _PATTERNS)
            assert bool(_ANY.search(framed)) is hit, framed
            if hit:
                assert redact_text(framed) != framed
            else:
                assert redact_text(framed) == framed
    for text, secret in ((AWS_SECRET, AWS_SECRET), (BEARER, BEARER.split()[1]),
                         (f"password={PASSWORD}", PASSWORD), (WHSEC, WHSEC), (JWT, JWT)):
        assert secret not in redact_text(f"x {text} y")
