"""Opening a SQLite file in WAL mode while another process writes it waits, not fails."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from stanch.sqlite_wal import use_wal


def test_use_wal_waits_for_a_writer_then_switches(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, isolation_level=None, timeout=0.01)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode = WAL")  # what SQLite answers on its own
    threading.Timer(0.3, lambda: writer.execute("COMMIT")).start()
    t0 = time.monotonic()
    use_wal(other, timeout=10)
    assert 0.2 < time.monotonic() - t0 < 5
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.close()
    other.close()
