"""``stanch audit …`` against a real store file named by the settings."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stanch.audit import SqliteAuditStore
from stanch.cli.audit import audit_app
from stanch.models import AuditType

from .helpers import event

KEY = "cli-checkpoint-key-0123456789"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "audit.db"
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("STANCH_AUDIT__SQLITE_PATH", str(path))
    monkeypatch.setenv("STANCH_AUDIT__CHECKPOINT_KEY", KEY)
    store = SqliteAuditStore(path)
    store.append_many([event(i) for i in range(6)])
    store.append(event(6, type=AuditType.action_intent, action_id="act-1", phase="intent",
                       data={"action": "revoke"}, dedup_key="act-1:intent"))
    store.close()
    yield path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(audit_app, list(args))
    return result.exit_code, result.output


def test_verify_ok_then_names_the_broken_record(db: Path) -> None:
    code, out = _run("checkpoint")
    assert code == 0 and "head seq 7" in out
    code, out = _run("verify")
    assert code == 0 and "ok: 8 records" in out and "signatures verified" in out
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_records_no_delete")
    conn.execute("DELETE FROM audit_records WHERE seq >= 6")  # truncate the tail
    conn.commit()
    conn.close()
    code, out = _run("verify")
    assert code == 1
    assert "BROKEN at seq 6: log truncated: it ends at seq 5" in out


def test_tail_export_doubts(db: Path, tmp_path: Path) -> None:
    code, out = _run("tail", "-n", "2")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].split()[0] == "6" and "action_id=act-1" in lines[1]

    code, out = _run("doubts")
    assert code == 0 and "in doubt: seq=7" in out and "action=revoke" in out

    target = tmp_path / "out.jsonl"
    code, out = _run("export", "--format", "ocsf", "--since", "2025-03-01T12:00:02Z",
                     "--out", str(target))
    events = [json.loads(x) for x in target.read_text().splitlines()]
    assert code == 0 and [e["metadata"]["sequence"] for e in events] == [3, 4, 5, 6, 7]
    code, out = _run("export", "--format", "jsonl")
    raw = [json.loads(x) for x in out.strip().splitlines()]
    assert [r["seq"] for r in raw] == list(range(1, 8)) and "hash" in raw[0]
    code, out = _run("export", "--since", "yesterday")
    assert code != 0 and "ISO 8601" in out


def test_checkpoint_needs_a_key(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STANCH_AUDIT__CHECKPOINT_KEY")
    code, out = _run("checkpoint")
    assert code == 2 and "no checkpoint key" in out
    code, out = _run("verify")
    assert code == 0 and "signatures NOT verified" in out


def test_tail_follow_prints_new_records(db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from stanch.cli.audit import audit_app; audit_app()",
         "tail", "-n", "1", "--follow", "--interval", "0.1"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[0] == "7"
        time.sleep(0.3)
        store = SqliteAuditStore(db)
        store.append(event(7, reason="appended while following"))
        store.close()
        line = proc.stdout.readline()
        assert line.split()[0] == "8" and "appended while following" in line
    finally:
        proc.kill()
        proc.wait()
