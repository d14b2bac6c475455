"""Signed checkpoints of the chain head, so deleting the newest records is detectable.

A hash chain alone cannot tell a truncated log from a short one: the last surviving record
still links correctly. A checkpoint is an HMAC-SHA256 (key from configuration, never stored
with the log) over the head's seq, hash and time, kept in its own table *and* appended to
the chain as an ``audit.checkpoint`` record, so it also reaches the SIEM through the outbox:
whoever deletes the tail and the checkpoints table still leaves a copy outside.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime

from stanch.audit.base import AuditStore, Checkpoint, canonical_json, format_ts
from stanch.logging import get_logger
from stanch.models import AuditEvent, AuditType

log = get_logger(__name__)


def _message(head_seq: int, head_hash: str, at: datetime) -> bytes:
    return canonical_json({"head_seq": head_seq, "head_hash": head_hash,
                           "at": format_ts(at)}).encode()


def sign(key: bytes, head_seq: int, head_hash: str, at: datetime) -> str:
    return hmac.new(key, _message(head_seq, head_hash, at), hashlib.sha256).hexdigest()


def signature_valid(key: bytes, cp: Checkpoint) -> bool:
    return hmac.compare_digest(sign(key, cp.head_seq, cp.head_hash, cp.at), cp.signature)


def checkpoint_event(cp: Checkpoint) -> AuditEvent:
    """The chain record that mirrors a checkpoint (exported like any other record)."""
    return AuditEvent(
        type=AuditType.checkpoint,
        at=cp.at,
        actor="stanch",
        reason="periodic signed checkpoint of the chain head",
        data={"head_seq": cp.head_seq, "head_hash": cp.head_hash,
              "signature": cp.signature, "checkpoint_id": cp.id},
        dedup_key=f"checkpoint:{cp.head_seq}:{cp.head_hash}",
    )


def checkpoint_if_changed(store: AuditStore, key: bytes, at: datetime) -> Checkpoint | None:
    """Checkpoint unless nothing but the previous checkpoint's own record was appended."""
    head_seq, _ = store.head()
    last = store.get(head_seq) if head_seq else None
    if last is not None and last.type == AuditType.checkpoint:
        return None
    return store.checkpoint(key, at)


async def run_checkpoints(store: AuditStore, key: bytes, interval_seconds: float,
                          stop: asyncio.Event) -> None:
    """Checkpoint every ``interval_seconds`` until ``stop`` is set (run in the worker)."""
    while not stop.is_set():
        try:
            cp = await asyncio.to_thread(checkpoint_if_changed, store, key, datetime.now(UTC))
            if cp is not None:
                log.info("audit.checkpoint", head_seq=cp.head_seq, checkpoint_id=cp.id)
        except Exception as err:  # keep checkpointing through transient store errors
            log.error("audit.checkpoint_failed", error=str(err))
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
        except TimeoutError:
            pass
