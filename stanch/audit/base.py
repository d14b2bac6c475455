"""The audit chain's shared contract: the store protocol, what a record looks like on disk.

A record is stored as its *body*: the canonical JSON of every field except ``hash`` (sorted
keys, no spaces, UTF-8), and ``hash = sha256(body)``. The body carries ``seq`` and
``prev_hash``, so each record commits to its place and to everything before it. Query
columns (type, subject, …) are copies of body fields for indexes; verify checks they agree.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from stanch.models import AuditEvent, AuditRecord, AuditType
from stanch.redact import redact, redact_text

GENESIS_HASH = "0" * 64

# Body fields copied into indexed columns; verify compares each with the body.
INDEX_FIELDS = ("type", "at", "subject", "workflow_id", "action_id", "phase", "dedup_key",
                "alert_ids")
# Free-text fields that may carry a secret by mistake; redacted before chaining.
_TEXT_FIELDS = ("actor", "subject", "workflow_id", "action_id", "phase", "reason", "ticket")


class VerifyReport(BaseModel):
    """Outcome of walking the chain. ``problem`` names the record and what is wrong."""

    ok: bool
    records: int = Field(description="Records read before stopping.")
    first_bad_seq: int | None = None
    problem: str | None = None
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = Field(default=0, description="Checkpoints compared with the chain.")
    signatures_checked: bool = Field(
        default=False, description="True when a key was given and checkpoint HMACs verified."
    )


class Checkpoint(BaseModel):
    """A signed statement: at ``at`` the chain's head was ``head_seq`` with ``head_hash``."""

    id: int | None = None
    at: datetime
    head_seq: int
    head_hash: str
    signature: str = Field(description="HMAC-SHA256 hex over seq, hash and time.")


class AuditError(Exception):
    """The audit store could not do what was asked; the message says why."""


class UnstorableRecord(AuditError, ValueError):
    """A record no store could ever write (text that is not Unicode, a NUL in an indexed
    column, a number JSON cannot hold). Refused before it joins a batch, so it fails only
    the caller that made it; ``field`` names where the problem is."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"audit record field {field!r} {problem}: fix the text that "
                         f"reached it (it was refused, nothing was written)")
        self.field = field
        self.problem = problem


@runtime_checkable
class AuditStore(Protocol):
    """Append-only, hash-chained audit log. Methods are synchronous: call them from async
    code with ``asyncio.to_thread`` (or ``run_in_threadpool``)."""

    def append(self, event: AuditEvent) -> AuditRecord: ...

    def append_many(self, events: Sequence[AuditEvent]) -> list[AuditRecord]: ...

    def get(self, seq: int) -> AuditRecord | None: ...

    def find(self, dedup_key: str) -> AuditRecord | None: ...

    def query(
        self,
        *,
        subject: str | None = None,
        workflow_id: str | None = None,
        types: Iterable[AuditType | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        alert_id: str | None = None,
    ) -> list[AuditRecord]: ...

    def head(self) -> tuple[int, str]: ...

    def verify(self, checkpoint_key: bytes | None = None) -> VerifyReport: ...

    def checkpoint(self, key: bytes, at: datetime) -> Checkpoint: ...

    def checkpoints(self) -> list[Checkpoint]: ...

    def doubts(self) -> list[AuditRecord]: ...

    # Outbox: one row per record, removed once the SIEM has it.
    def outbox_pending(self, limit: int = 100) -> list[AuditRecord]: ...

    def outbox_delivered(self, seqs: Sequence[int]) -> None: ...

    def outbox_failed(self, seqs: Sequence[int], error: str, at: datetime) -> None: ...

    def outbox_backlog(self) -> int: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- encoding


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def format_ts(at: datetime) -> str:
    """UTC, fixed width, so text columns sort in time order and bodies hash the same."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def storage_dedup_key(key: str | None) -> str | None:
    """The dedup key as stored: itself, or its digest when it would leak a secret."""
    if key is None:
        return None
    if redact_text(key) != key:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def prepare(event: AuditEvent) -> dict[str, Any]:
    """The event as chained fields: redacted, JSON-typed, time normalized; no seq/hashes.

    Raises :class:`UnstorableRecord` when the record could not be sealed or stored."""
    try:
        fields = _prepare(event)
    except UnicodeEncodeError as err:  # a digest over text that is not Unicode
        raise UnstorableRecord(_culprit(event.model_dump(mode="json")), _problem(err)) from None
    check_storable(fields)
    return fields


def check_storable(fields: dict[str, Any]) -> None:
    """Refuse what would fail inside a transaction: a body that does not encode as UTF-8
    (an unpaired surrogate), a value JSON cannot hold, a NUL in an indexed column (a
    PostgreSQL ``text`` cannot hold one)."""
    try:
        canonical_json(fields).encode()
    except UnicodeEncodeError as err:
        raise UnstorableRecord(_culprit(fields), _problem(err)) from None
    except (TypeError, ValueError) as err:
        raise UnstorableRecord(_culprit(fields), f"is not JSON: {err}") from None
    for name in INDEX_FIELDS:
        value = fields.get(name)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in values):
            raise UnstorableRecord(name, "holds a NUL character")


def _culprit(fields: dict[str, Any]) -> str:
    for name, value in fields.items():
        try:
            canonical_json(value).encode()
        except (UnicodeEncodeError, TypeError, ValueError):
            return name
    return "?"


def _problem(err: UnicodeEncodeError) -> str:
    bad = err.object[err.start:err.end]
    return f"holds an unpaired UTF-16 surrogate (U+{ord(bad[0]):04X})" if bad else str(err)


def _prepare(event: AuditEvent) -> dict[str, Any]:
    fields = event.model_dump(mode="json")
    for name in _TEXT_FIELDS:
        if isinstance(fields.get(name), str):
            fields[name] = redact_text(fields[name])
    fields["alert_ids"] = redact(fields["alert_ids"])
    fields["data"] = redact(fields["data"])
    fields["at"] = format_ts(event.at)
    fields["dedup_key"] = storage_dedup_key(event.dedup_key)
    return fields


def seal(fields: dict[str, Any], seq: int, prev_hash: str) -> tuple[str, str]:
    """Body text and hash for ``fields`` placed at ``seq`` after ``prev_hash``."""
    body = canonical_json({**fields, "seq": seq, "prev_hash": prev_hash})
    return body, hashlib.sha256(body.encode()).hexdigest()


def record_from(body: str, hash_: str) -> AuditRecord:
    return AuditRecord.model_validate({**json.loads(body), "hash": hash_})


@dataclass(frozen=True)
class StoredRow:
    """A row as read back for verification: where it sits, what it says, its columns."""

    seq: int
    body: str
    hash: str
    columns: dict[str, Any]


def index_columns(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: fields.get(name) for name in INDEX_FIELDS}


class GroupCommit:
    """Appends from many threads share transactions: one commit (one fsync) for all of
    them, each caller still returning only once its own record is durable.

    The caller that takes the write turn commits every record queued so far (up to
    ``max_batch``); the callers whose records it carried find them done when their turn
    comes. Under no contention a batch is the one record. Records are prepared (and
    refused if they could never be stored) before they are queued, so a bad one fails
    only its own caller; if a batch's transaction fails anyway, nothing of it was written
    and each member is retried in a transaction of its own, so the failure stays with the
    member that caused it.
    """

    def __init__(self, write: Callable[[Sequence[dict[str, Any]]], list[AuditRecord]], *,
                 max_batch: int = 256) -> None:
        self._write = write
        self._max = max_batch
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def append(self, fields: dict[str, Any]) -> AuditRecord:
        """Write one prepared record (see :func:`prepare`); its record once durable."""
        slot = _Slot(fields)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:
            with self._turn:
                if slot.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[:self._max], self._queue[self._max:]
                self._commit(batch)
        if slot.error is not None:
            raise slot.error
        assert slot.record is not None
        return slot.record

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            records = self._write([s.fields for s in batch])
        except Exception as err:
            if len(batch) > 1:
                # Nothing of the batch was written (one transaction): retry its members
                # one at a time, so each gets its own outcome.
                for s in batch:
                    self._commit([s])
            else:
                batch[0].error, batch[0].done = err, True
        except BaseException as err:  # interrupted: nobody may wait for a turn forever
            for s in batch:
                if not s.done:
                    s.error, s.done = err, True
            raise
        else:
            for s, record in zip(batch, records, strict=True):
                s.record, s.done = record, True


class _Slot:
    __slots__ = ("done", "error", "fields", "record")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.done = False
        self.record: AuditRecord | None = None
        self.error: BaseException | None = None
