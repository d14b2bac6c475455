"""Two processes (the API and the worker) appending to one SQLite file stay one chain."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from stanch.audit import SqliteAuditStore

from .helpers import append_in_child


def _race(path: Path, n: int, dedup: bool) -> list[list[int]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(2)
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            futures = [pool.submit(append_in_child, str(path), start, n, dedup)
                       for _ in range(2)]
            return [f.result(timeout=60) for f in futures]


def test_same_dedup_keys_from_two_processes_yield_one_record_each(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    SqliteAuditStore(path).close()
    a, b = _race(path, 40, dedup=True)
    # Both processes got the same record for each key, whoever won the race.
    assert a == b
    store = SqliteAuditStore(path)
    assert store.head()[0] == 40
    assert sorted(a) == list(range(1, 41))
    report = store.verify()
    assert report.ok, report.problem
    store.close()


def test_interleaved_appends_from_two_processes_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    a, b = _race(path, 40, dedup=False)
    assert sorted(a + b) == list(range(1, 81))
    store = SqliteAuditStore(path)
    report = store.verify()
    assert report.ok and report.records == 80, report.problem
    store.close()
