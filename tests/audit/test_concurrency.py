"""Two processes (the API and the worker) appending to one SQLite file stay one chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from stanch.audit import SqliteAuditStore

# Each child waits for the go file so both really race, then appends n action intents.
_CHILD = """
import json, os, sys, time
from datetime import UTC, datetime
from stanch.audit import SqliteAuditStore
from stanch.models import AuditEvent, AuditType
path, go, n, dedup = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
store = SqliteAuditStore(path)
while not os.path.exists(go):
    time.sleep(0.005)
seqs = []
for i in range(n):
    seqs.append(store.append(AuditEvent(
        type=AuditType.action_intent, at=datetime.now(UTC), actor=f"proc-{os.getpid()}",
        action_id=f"shared{i}", phase="intent",
        dedup_key=f"shared{i}:intent" if dedup else None)).seq)
store.close()
print(json.dumps(seqs))
"""


def _race(path: Path, n: int, dedup: bool) -> list[list[int]]:
    go = path.with_suffix(".go")
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(go), str(n),
                               "1" if dedup else "0"], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.5)  # let both open the store first
    go.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(o) for o in outs]


def test_same_dedup_keys_from_two_processes_yield_one_record_each(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    a, b = _race(path, 40, dedup=True)
    # Both processes got the same record for each key, whoever won each race.
    assert a == b == list(range(1, 41))
    store = SqliteAuditStore(path)
    assert store.head()[0] == 40
    assert {r.dedup_key for r in store.query(limit=100)} == {f"shared{i}:intent"
                                                              for i in range(40)}
    report = store.verify()
    assert report.ok, report.problem
    store.close()


def test_interleaved_appends_from_two_processes_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    a, b = _race(path, 40, dedup=False)
    assert sorted(a + b) == list(range(1, 81))
    store = SqliteAuditStore(path)
    actors = {r.actor for r in store.query(limit=100)}
    assert len(actors) == 2  # both processes wrote
    report = store.verify()
    assert report.ok and report.records == 80, report.problem
    store.close()
