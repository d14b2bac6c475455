"""Stanch as a transmitter: its metadata, stream configuration, and what an action says.

:class:`Transmitter` is used by the API (metadata, streams, status, verification, poll) and
by the worker's emitter (:meth:`Transmitter.announce`), which turns the audit trail's
applied actions and undos into SETs queued for every stream that asked for that event.
Driving emission from the audit chain keeps it off the containment's path: the workflow and
its history do not change, and the IdP write is never waiting on a receiver.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from stanch.logging import get_logger
from stanch.models import Action, AuditRecord, AuditType, IdentityContext
from stanch.ssf import events
from stanch.ssf.client import POLL, PUSH
from stanch.ssf.keys import KeyStore
from stanch.ssf.set import make_claims, sign
from stanch.ssf.store import SsfStore, Stream
from stanch.ssf.subjects import subject_key, subject_of

__all__ = ["StreamError", "Transmitter", "subject_key", "subject_of"]

log = get_logger(__name__)
STATUSES = ("enabled", "paused", "disabled")
SUPPORTED = sorted(events.TRANSMITTED | {events.VERIFICATION, events.STREAM_UPDATED})


class StreamError(Exception):
    """A stream request Stanch refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Prepared:
    """One signed SET for one stream, ready to queue."""

    stream_id: str
    jti: str
    event_type: str
    token: str


class Identities(Protocol):
    """Where the transmitter looks up an identity whose record does not name its subject
    (an :class:`~stanch.inventory.Inventory` is one)."""

    def get(self, identity_key: str) -> IdentityContext | None: ...


class Transmitter:
    def __init__(self, issuer: str, store: SsfStore, keys: KeyStore,
                 inventory: Identities | None = None, *,
                 min_verification_interval: int = 0) -> None:
        self.issuer = issuer.rstrip("/")
        self.store = store
        self.keys = keys
        self.inventory = inventory
        self.min_verification_interval = min_verification_interval

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": f"{base}/v1/ssf/jwks.json",
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": f"{base}/v1/ssf/streams",
            "status_endpoint": f"{base}/v1/ssf/status",
            "verification_endpoint": f"{base}/v1/ssf/verify",
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "add_subject_endpoint": f"{base}/v1/ssf/subjects:add",
            "remove_subject_endpoint": f"{base}/v1/ssf/subjects:remove",
            "default_subjects": "ALL",
        }

    def well_known_path(self) -> str:
        path = urlsplit(self.issuer).path.rstrip("/")
        return "/.well-known/ssf-configuration" + path

    # ------------------------------------------------------------------ streams
    def create(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        stream_id = "ssf-" + secrets.token_hex(12)
        config = self._config(stream_id, owner, body, None)
        self.store.create_stream(stream_id, owner, config)
        return self.describe(self.store.stream(stream_id))  # type: ignore[arg-type]

    def update(self, stream: Stream, body: dict[str, Any], *, replace: bool) -> dict[str, Any]:
        merged = body if replace else {**_receiver_fields(stream.config), **body}
        config = self._config(stream.stream_id, stream.owner, merged, stream.config)
        self.store.update_stream(stream.stream_id, config)
        return self.describe(self.store.stream(stream.stream_id))  # type: ignore[arg-type]

    def _config(self, stream_id: str, owner: str, body: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise StreamError(400, "the stream configuration must be a JSON object")
        for ro in ("iss", "events_supported", "events_delivered", "min_verification_interval"):
            if ro in body and old is not None and body[ro] != old.get(ro):
                raise StreamError(400, f"{ro} is set by the transmitter, not the receiver")
        requested = body.get("events_requested", [])
        if not isinstance(requested, list) or not all(isinstance(e, str) for e in requested):
            raise StreamError(400, "events_requested must be a list of event type URIs")
        delivery = body.get("delivery") or {"method": POLL}
        if not isinstance(delivery, dict):
            raise StreamError(400, "delivery must be an object")
        method = delivery.get("method")
        if method == PUSH:
            url = delivery.get("endpoint_url")
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise StreamError(400, "push delivery needs an http(s) endpoint_url")
            auth = delivery.get("authorization_header")
            if auth is not None and not isinstance(auth, str):
                raise StreamError(400, "authorization_header must be a string")
            delivery = {"method": PUSH, "endpoint_url": url,
                        **({"authorization_header": auth} if auth else {})}
        elif method == POLL:
            delivery = {"method": POLL, "endpoint_url": f"{self.issuer}/v1/ssf/poll/{stream_id}"}
        else:
            raise StreamError(400, f"delivery.method must be {PUSH} or {POLL}")
        aud = body.get("aud", old.get("aud") if old else owner)
        if not (isinstance(aud, str) or (isinstance(aud, list) and aud
                                         and all(isinstance(a, str) for a in aud))):
            raise StreamError(400, "aud must be a string or a list of strings")
        description = body.get("description")
        return {
            "stream_id": stream_id, "iss": self.issuer, "aud": aud,
            "events_supported": SUPPORTED, "events_requested": requested,
            "events_delivered": [e for e in requested if e in events.TRANSMITTED],
            "delivery": delivery,
            "min_verification_interval": self.min_verification_interval,
            **({"description": str(description)[:500]} if description else {}),
            "excluded_subjects": list(old.get("excluded_subjects", [])) if old else [],
        }

    def change_subject(self, stream: Stream, subject: Any, *, add: bool) -> None:
        """``default_subjects`` is ALL: removing a subject excludes it from the stream,
        adding it back includes it again."""
        from stanch.ssf.set import check_subject

        check_subject(subject, "subject")
        key = subject_key(subject)
        if key is None:
            raise StreamError(400, "subject must be an email or iss_sub subject")
        excluded = [k for k in stream.config.get("excluded_subjects", []) if k != key]
        if not add:
            if len(excluded) >= 10_000:
                raise StreamError(400, "a stream excludes at most 10000 subjects")
            excluded.append(key)
        self.store.update_stream(stream.stream_id,
                                 {**stream.config, "excluded_subjects": excluded})

    def describe(self, stream: Stream) -> dict[str, Any]:
        """The stream as a receiver reads it: the push authorization header is never shown."""
        out = dict(stream.config)
        out.pop("excluded_subjects", None)
        delivery = dict(out.get("delivery", {}))
        delivery.pop("authorization_header", None)
        out["delivery"] = delivery
        return out

    # ------------------------------------------------------------------ SETs
    def _signed(self, stream: Stream, jti: str, event_type: str, event: dict[str, Any],
                sub_id: dict[str, Any], txn: str | None) -> Prepared:
        key = self.keys.signing_key()
        claims = make_claims(iss=self.issuer, aud=stream.config["aud"], event_type=event_type,
                             event=event, sub_id=sub_id, txn=txn, jti=jti)
        return Prepared(stream.stream_id, jti, event_type, sign(claims, key.private, key.kid))

    def _queue(self, stream: Stream, jti: str, event_type: str, event: dict[str, Any],
               sub_id: dict[str, Any], txn: str | None) -> bool:
        p = self._signed(stream, jti, event_type, event, sub_id, txn)
        return self.store.enqueue(p.stream_id, p.jti, p.event_type, p.token)

    def verification(self, stream: Stream, state: str | None) -> str:
        """Queue a verification event for ``stream``; returns its jti."""
        jti = secrets.token_hex(16)
        event = {"state": state} if state else {}
        self._queue(stream, jti, events.VERIFICATION, event,
                    {"format": "opaque", "id": stream.stream_id}, None)
        self.store.mark_verified(stream.stream_id)
        return jti

    def stream_updated(self, stream: Stream, status: str, reason: str | None) -> None:
        event: dict[str, Any] = {"status": status}
        if reason:
            event["reason"] = reason
        self._queue(stream, secrets.token_hex(16), events.STREAM_UPDATED, event,
                    {"format": "opaque", "id": stream.stream_id}, None)

    def announce(self, record: AuditRecord) -> list[str]:
        """Queue the SETs one audit record calls for; returns the stream ids queued to.

        Idempotent: the jti is derived from the stream and the record, so announcing a
        record again after a crash queues nothing new.
        """
        return self.announce_all([record])[0]

    def announce_all(self, records: list[AuditRecord]) -> list[list[str]]:
        """:meth:`announce` for a batch: every SET signed first, then all queued in one short
        transaction (the API shares the file; a lock held while signing would keep it
        waiting). The stream ids queued to, per record."""
        prepared = [self.prepare(record) for record in records]
        self.store.enqueue_all([(p.stream_id, p.jti, p.event_type, p.token)
                                for sets in prepared for p in sets])
        return [[p.stream_id for p in sets] for sets in prepared]

    def prepare(self, record: AuditRecord) -> list[Prepared]:
        """The signed SETs one audit record calls for, one per stream that asked for its
        event, not yet queued."""
        found = _what_happened(record)
        if found is None:
            return []
        event_type, action, undo, result = found
        # The subject as the containment knew it when it acted (carried in the record);
        # records from before that look it up in the inventory.
        sub_id = record.data.get("subject")
        if not isinstance(sub_id, dict):
            ctx = self.inventory.get(record.subject or "") if self.inventory else None
            sub_id = subject_of(ctx)
        if sub_id is None:
            log.info("ssf.no_subject", subject_ref=record.subject, seq=record.seq)
            return []
        event = _event(event_type, action, undo, result, record)
        prepared: list[Prepared] = []
        key = subject_key(sub_id)
        for stream in self.store.streams():
            if stream.status == "disabled" or \
                    event_type not in stream.config.get("events_delivered", []) or \
                    key in stream.config.get("excluded_subjects", []):
                continue
            jti = hashlib.sha256(f"{stream.stream_id}\x00{record.dedup_key or record.seq}"
                                 .encode()).hexdigest()[:32]
            prepared.append(self._signed(stream, jti, event_type, event, sub_id,
                                         record.workflow_id))
        return prepared


def _receiver_fields(config: dict[str, Any]) -> dict[str, Any]:
    keep = ("events_requested", "delivery", "description", "aud", "excluded_subjects")
    return {k: config[k] for k in keep if k in config}


def _what_happened(record: AuditRecord) -> tuple[str, Action, bool, dict[str, Any]] | None:
    if record.phase != "result" or "result" not in record.data:
        return None
    result = record.data["result"]
    wanted = "undone" if record.type == AuditType.revert else "applied"
    if not isinstance(result, dict) or result.get("status") != wanted:
        return None
    try:
        action = Action(str(result.get("action")))
    except ValueError:
        return None
    if record.type == AuditType.action_result:
        event_type = events.OUTGOING.get(action)
        undo = False
    elif record.type == AuditType.revert:
        event_type = events.OUTGOING_UNDO.get(action)
        undo = True
    else:
        return None
    return (event_type, action, undo, result) if event_type else None


def _event(event_type: str, action: Action, undo: bool, result: dict[str, Any],
           record: AuditRecord) -> dict[str, Any]:
    when = int(record.at.astimezone(UTC).timestamp()) if record.at else \
        int(datetime.now(UTC).timestamp())
    what = f"{'undo of ' if undo else ''}{action.value}"
    reason = (record.reason or "").strip()
    event: dict[str, Any] = {
        "event_timestamp": when,
        "initiating_entity": "admin" if record.actor not in ("stanch", "") else "policy",
        "reason_admin": {"en": f"Stanch containment {record.workflow_id}: {what}"
                               + (f" ({reason[:200]})" if reason else "")},
    }
    if event_type == events.CREDENTIAL_CHANGE:
        kind = str((result.get("after") or {}).get("credential_type") or "password")
        event["credential_type"] = kind if kind in _CREDENTIAL_TYPES else "password"
        event["change_type"] = "update"
    elif event_type == events.ACCOUNT_DISABLED:
        event["reason"] = "hijacking"
    elif event_type == events.TOKEN_CLAIMS_CHANGE:
        groups = (result.get("before" if undo else "after") or {}).get("groups")
        event["claims"] = {"groups": groups} if isinstance(groups, list) else \
            {"scope_reduced": not undo}
    return event


_CREDENTIAL_TYPES = frozenset({"password", "pin", "x509", "fido2-platform", "fido2-roaming",
                               "fido-u2f", "verifiable-credential", "phone-voice", "phone-sms",
                               "app"})
