"""Audit records as OCSF 1.3 events, for the SIEM.

Which class, and why:

* **Account Change (3001)** — an action result, failure, revert or rollback changed (or
  tried to change) an identity at its provider. ``activity_id`` per OCSF:
  reduce_scope → 8 *Detach Policy* (groups, roles, policies removed; undo → 7 *Attach
  Policy*); revoke → 5 *Disable* (undo → 2 *Enable*); rotate → 4 *Password Reset* (a
  credential replaced by someone other than its owner; undo re-enables the old one → 2
  *Enable*); force_reauth → 99 *Other* ("Revoke Sessions": OCSF has no session-revocation
  activity in this class); containment rollback → 99 *Other* ("Rollback"). ``status_id`` 1
  Success or 2 Failure.
* **User Access Management (3005)** — elevation granted or extended → 1 *Assign
  Privileges*, revoked → 2 *Revoke Privileges*, with the scopes in ``privileges``. This is the
  class OCSF defines for privileges given to and taken from a user; an elevation does not
  change the account itself, so Account Change would misstate it.
* **Incident Finding (2005)** — everything about *deciding*: alerts received or refused,
  plans, approval requests, escalations, decisions and refusals, timeouts, intents, break
  glass, reviews, elevation requests, confirmation and resolution. A containment *is* an
  incident response: ``finding_info_list[0].uid`` is the workflow id, so a SIEM groups every
  decision of one containment; ``actor`` is who decided, ``comment`` why. API Activity
  (6003) was the alternative, but it describes a call to an API (operation, request,
  response), not who approved which step of which response and why; Detection Finding
  (2004) describes a detection — the alert itself, which the SIEM already has.
  activity_id: 1 *Create* (alert received, manual containment), 3 *Close* (resolved),
  2 *Update* otherwise; status_id 3 *On Hold* while waiting for approval, 4 *Resolved* when
  resolved, else 2 *In Progress*.
* **Event Log Activity (1008)** — the audit log's own signed checkpoints: 99 *Other*
  ("Checkpoint").

Every event carries ``metadata.uid`` = the record's chain hash (stable across redelivery,
so the SIEM can drop duplicates of at-least-once delivery), ``metadata.sequence`` = seq,
``metadata.correlation_uid`` = workflow id, and the whole record under ``unmapped.stanch``
(Incident Finding has no ``user``; its subject is there and in the finding's title).
"""

from __future__ import annotations

from typing import Any

from stanch.models import AuditRecord, AuditType

OCSF_VERSION = "1.3.0"

_ACCOUNT_CHANGE, _USER_ACCESS, _INCIDENT, _EVENT_LOG = 3001, 3005, 2005, 1008
_CLASS = {
    _ACCOUNT_CHANGE: ("Account Change", 3, "Identity & Access Management"),
    _USER_ACCESS: ("User Access Management", 3, "Identity & Access Management"),
    _INCIDENT: ("Incident Finding", 2, "Findings"),
    _EVENT_LOG: ("Event Log Activity", 1, "System Activity"),
}
_ACCOUNT_ACTIVITY = {1: "Create", 2: "Enable", 4: "Password Reset", 5: "Disable",
                     7: "Attach Policy", 8: "Detach Policy", 99: "Other"}
# (apply, undo) per ladder action.
_LADDER = {"reduce_scope": (8, 7), "revoke": (5, 2), "rotate": (4, 2), "force_reauth": (99, 99)}
_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}
_INCIDENT_STATUS = {2: "In Progress", 3: "On Hold", 4: "Resolved"}


def _action_name(rec: AuditRecord) -> str | None:
    for source in (rec.data, rec.data.get("result") or {}, rec.data.get("original") or {}):
        if isinstance(source, dict) and isinstance(source.get("action"), str):
            return str(source["action"])
    return None


def _classify(rec: AuditRecord) -> tuple[int, int, str, int]:
    """(class_uid, activity_id, activity_name, status_id) for a record."""
    t = rec.type
    if t in (AuditType.action_result, AuditType.action_failed, AuditType.revert) and \
            rec.phase != "intent":
        action = _action_name(rec)
        apply_id, undo_id = _LADDER.get(action or "", (99, 99))
        activity = undo_id if t == AuditType.revert else apply_id
        name = _ACCOUNT_ACTIVITY[activity]
        if activity == 99:
            name = "Revoke Sessions" if action == "force_reauth" else (action or "Other")
        status = 2 if t == AuditType.action_failed else 1
        return _ACCOUNT_CHANGE, activity, name, status
    if t == AuditType.rollback:
        return _ACCOUNT_CHANGE, 99, "Rollback", 1
    if t in (AuditType.elevation_granted, AuditType.elevation_extended):
        return _USER_ACCESS, 1, "Assign Privileges", 1
    if t == AuditType.elevation_revoked:
        return _USER_ACCESS, 2, "Revoke Privileges", 1
    if t == AuditType.checkpoint:
        return _EVENT_LOG, 99, "Checkpoint", 1
    if t in (AuditType.alert_received, AuditType.manual_containment):
        return _INCIDENT, 1, "Create", 2
    if t == AuditType.resolved:
        return _INCIDENT, 3, "Close", 4
    if t in (AuditType.approval_requested, AuditType.approval_escalated):
        return _INCIDENT, 2, "Update", 3
    return _INCIDENT, 2, "Update", 2


def _severity(rec: AuditRecord) -> int:
    if rec.type == AuditType.break_glass:
        return 4
    if rec.type in (AuditType.action_failed, AuditType.alert_dead_letter,
                    AuditType.approval_timeout):
        return 3
    if rec.type in (AuditType.decision_refused, AuditType.alert_refused, AuditType.access_refused,
                    AuditType.identity_unresolved):
        return 2
    return 1


def _user(subject: str) -> dict[str, Any]:
    provider, _, ident = subject.partition(":")
    user: dict[str, Any] = {"uid": subject, "name": ident or subject}
    if ident:
        user["domain"] = provider
    return user


def to_ocsf(rec: AuditRecord, *, product_version: str = "0.1.0") -> dict[str, Any]:
    """One OCSF event for one record (see the module docstring for the mapping)."""
    class_uid, activity_id, activity_name, status_id = _classify(rec)
    class_name, category_uid, category_name = _CLASS[class_uid]
    severity_id = _severity(rec)
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "time": int(rec.at.timestamp() * 1000),
        "severity_id": severity_id,
        "severity": _SEVERITY[severity_id],
        "message": rec.reason or rec.type.value,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": rec.hash,
            "sequence": rec.seq,
            "log_name": "stanch.audit",
            "product": {"name": "Stanch", "vendor_name": "Stanch", "version": product_version},
            **({"correlation_uid": rec.workflow_id} if rec.workflow_id else {}),
        },
        "actor": {"user": {"uid": rec.actor, "name": rec.actor}},
        "unmapped": {"stanch": rec.model_dump(mode="json")},
    }
    if class_uid == _INCIDENT:
        event["status_id"] = status_id
        event["status"] = _INCIDENT_STATUS[status_id]
        event["finding_info_list"] = [{
            "uid": rec.workflow_id or f"stanch-audit-{rec.seq}",
            "title": f"{rec.type.value} {rec.subject}" if rec.subject else rec.type.value,
            "related_events": [{"uid": a} for a in rec.alert_ids],
        }]
        if rec.reason:
            event["comment"] = rec.reason
        if rec.ticket:
            event["ticket"] = {"uid": rec.ticket}
    else:
        event["status_id"] = status_id
        event["status"] = "Success" if status_id == 1 else "Failure"
    if rec.subject and class_uid in (_ACCOUNT_CHANGE, _USER_ACCESS):
        event["user"] = _user(rec.subject)
    if class_uid == _USER_ACCESS:
        scopes = rec.data.get("scopes") or rec.data.get("privileges") or []
        event["privileges"] = [str(s) for s in scopes] if isinstance(scopes, list) else []
    return event
