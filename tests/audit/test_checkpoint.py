"""Periodic checkpoints: signed, mirrored into the chain, skipped when nothing changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from stanch.audit import AuditStore
from stanch.audit.checkpoint import checkpoint_if_changed, run_checkpoints, signature_valid
from stanch.models import AuditType

from .helpers import T0, event

KEY = b"periodic-key"


def test_checkpoint_is_mirrored_in_the_chain(store: AuditStore) -> None:
    store.append_many([event(i) for i in range(3)])
    cp = checkpoint_if_changed(store, KEY, T0)
    assert cp is not None and cp.head_seq == 3 and signature_valid(KEY, cp)
    mirror = store.get(4)
    assert mirror is not None and mirror.type == AuditType.checkpoint
    assert mirror.data["head_hash"] == cp.head_hash and mirror.data["signature"] == cp.signature
    assert checkpoint_if_changed(store, KEY, T0) is None  # only its own record since
    store.append(event(5))
    again = checkpoint_if_changed(store, KEY, T0)
    assert again is not None and again.head_seq == 5
    assert [c.head_seq for c in store.checkpoints()] == [3, 5]
    assert store.verify(KEY).ok


async def test_run_checkpoints_until_stopped(store: AuditStore) -> None:
    store.append(event(0))
    stop = asyncio.Event()
    task = asyncio.create_task(run_checkpoints(store, KEY, 0.05, stop))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(store.append, event(1))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    cps = store.checkpoints()
    assert [c.head_seq for c in cps] == [1, 3]  # one per change, none while idle
    assert all(c.at <= datetime.now(UTC) for c in cps)
    assert store.verify(KEY).ok
