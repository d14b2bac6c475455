"""One way to put a SQLite file in WAL mode when several processes may open it at once.

WAL is a property of the file, set once. Switching needs the file to itself, and SQLite
answers "database is locked" at once there, without its busy handler: a process opening
the file while another one writes (the API and the worker share the audit, SSF and
dead-letter files) retries here instead of failing.
"""

from __future__ import annotations

import sqlite3
import time


def use_wal(conn: sqlite3.Connection, *, timeout: float = 30.0) -> None:
    """Put ``conn``'s file in WAL mode, retrying for up to ``timeout`` seconds while it is
    locked; raises :class:`sqlite3.OperationalError` when it cannot."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("could not switch the database to WAL journal mode")
        time.sleep(0.05)
