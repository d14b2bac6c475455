"""Walk the chain and say exactly where and how it was tampered with.

Checks, per record in seq order: the body still hashes to the stored hash (else *edited*);
the body's own seq is the row's seq (else *reordered*); seqs are contiguous from 1 (else
*deleted*); the body's prev_hash is the previous record's hash (else *reordered or
replaced*); indexed columns agree with the body (else *edited*, naming the column). Then each
checkpoint: signature (with the key), head not beyond the end (else *truncated*), and the
record at the checkpointed seq still has the checkpointed hash (else *rewritten*).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from stanch.audit.base import GENESIS_HASH, INDEX_FIELDS, Checkpoint, StoredRow, VerifyReport
from stanch.audit.checkpoint import signature_valid


def _row_problem(row: StoredRow, prev_seq: int, prev_hash: str) -> tuple[int, str] | None:
    s = row.seq
    if hashlib.sha256(row.body.encode()).hexdigest() != row.hash:
        return s, f"record {s} was edited: its content no longer matches its hash"
    try:
        body = json.loads(row.body)
    except ValueError:
        return s, f"record {s} was edited: its content is not valid JSON"
    if body.get("seq") != s:
        return s, (f"records were reordered: position {s} holds record {body.get('seq')} "
                   f"(expected record {s})")
    if s != prev_seq + 1:
        missing = (f"record {prev_seq + 1}" if s == prev_seq + 2
                   else f"records {prev_seq + 1}..{s - 1}")
        return prev_seq + 1, (f"{missing} deleted: the chain jumps from seq {prev_seq} "
                              f"to seq {s}")
    if body.get("prev_hash") != prev_hash:
        return s, (f"record {s} does not link to record {prev_seq}: prev_hash mismatch "
                   f"(records reordered, replaced, or record {prev_seq} rewritten)")
    for name in INDEX_FIELDS:
        if row.columns.get(name) != body.get(name):
            return s, (f"record {s} was edited: column {name!r} is "
                       f"{row.columns.get(name)!r} but the chained record says "
                       f"{body.get(name)!r}")
    return None


def verify_rows(rows: Iterable[StoredRow], checkpoints: Sequence[Checkpoint],
                key: bytes | None) -> VerifyReport:
    count, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    wanted = {cp.head_seq for cp in checkpoints}
    seen: dict[int, str] = {}

    def bad(seq: int, problem: str) -> VerifyReport:
        return VerifyReport(ok=False, records=count, first_bad_seq=seq, problem=problem,
                            head_seq=prev_seq, head_hash=prev_hash,
                            checkpoints=len(checkpoints), signatures_checked=key is not None)

    for row in rows:
        count += 1
        found = _row_problem(row, prev_seq, prev_hash)
        if found is not None:
            return bad(*found)
        if row.seq in wanted:
            seen[row.seq] = row.hash
        prev_seq, prev_hash = row.seq, row.hash

    for cp in sorted(checkpoints, key=lambda c: (c.head_seq, c.id or 0)):
        label = f"checkpoint {cp.id} (head seq {cp.head_seq}, signed {cp.at.isoformat()})"
        if key is not None and not signature_valid(key, cp):
            return bad(cp.head_seq, f"{label} has an invalid signature: forged, altered, "
                                    f"or signed with another key")
        if cp.head_seq > prev_seq:
            return bad(prev_seq + 1, (f"log truncated: it ends at seq {prev_seq} but {label} "
                                      f"saw the head at seq {cp.head_seq}; records "
                                      f"{prev_seq + 1}..{cp.head_seq} are gone"))
        if cp.head_seq > 0 and seen.get(cp.head_seq) != cp.head_hash:
            return bad(cp.head_seq, (f"record {cp.head_seq} differs from {label}: the chain "
                                     f"was rewritten up to it"))
    return VerifyReport(ok=True, records=count, head_seq=prev_seq, head_hash=prev_hash,
                        checkpoints=len(checkpoints), signatures_checked=key is not None)
