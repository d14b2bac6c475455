"""Records map onto the documented OCSF classes and activities."""

from __future__ import annotations

from typing import Any

import pytest

from stanch.audit.base import GENESIS_HASH
from stanch.audit.ocsf import to_ocsf
from stanch.models import AuditRecord, AuditType

from .helpers import event


def _rec(type_: AuditType, **kw: Any) -> AuditRecord:
    e = event(1, type=type_, **kw)
    return AuditRecord(**e.model_dump(), seq=5, prev_hash=GENESIS_HASH, hash="ab" * 32)


@pytest.mark.parametrize(("type_", "action", "class_uid", "activity_id", "status_id"), [
    (AuditType.action_result, "revoke", 3001, 5, 1),
    (AuditType.action_result, "reduce_scope", 3001, 8, 1),
    (AuditType.action_result, "rotate", 3001, 4, 1),
    (AuditType.action_result, "force_reauth", 3001, 99, 1),
    (AuditType.action_failed, "revoke", 3001, 5, 2),
    (AuditType.revert, "revoke", 3001, 2, 1),
    (AuditType.revert, "reduce_scope", 3001, 7, 1),
    (AuditType.rollback, None, 3001, 99, 1),
    (AuditType.elevation_granted, None, 3005, 1, 1),
    (AuditType.elevation_extended, None, 3005, 1, 1),
    (AuditType.elevation_revoked, None, 3005, 2, 1),
    (AuditType.alert_received, None, 2005, 1, 2),
    (AuditType.decision_recorded, None, 2005, 2, 2),
    (AuditType.approval_requested, None, 2005, 2, 3),
    (AuditType.resolved, None, 2005, 3, 4),
    (AuditType.checkpoint, None, 1008, 99, 1),
])
def test_classes_and_activities(type_: AuditType, action: str | None, class_uid: int,
                                activity_id: int, status_id: int) -> None:
    data = {"action": action, "scopes": ["admin"]} if action else {"scopes": ["admin"]}
    ev = to_ocsf(_rec(type_, data=data, actor="alice", subject="okta:00u1", ticket="INC-9"))
    assert (ev["class_uid"], ev["activity_id"], ev["status_id"]) == (class_uid, activity_id,
                                                                    status_id)
    assert ev["type_uid"] == class_uid * 100 + activity_id
    assert ev["category_uid"] == class_uid // 1000
    assert ev["metadata"]["uid"] == "ab" * 32 and ev["metadata"]["sequence"] == 5
    assert ev["metadata"]["correlation_uid"] == "containment-wf1"
    assert ev["actor"]["user"]["uid"] == "alice"
    assert ev["unmapped"]["stanch"]["type"] == type_.value
    if class_uid in (3001, 3005):
        assert ev["user"] == {"uid": "okta:00u1", "name": "00u1", "domain": "okta"}
    if class_uid == 3005:
        assert ev["privileges"] == ["admin"]
    if class_uid == 2005:
        assert ev["finding_info_list"][0]["uid"] == "containment-wf1"
        assert ev["finding_info_list"][0]["related_events"] == [{"uid": "alert-1"}]
        assert ev["ticket"] == {"uid": "INC-9"}


def test_every_type_maps() -> None:
    for t in AuditType:
        ev = to_ocsf(_rec(t))
        assert ev["class_uid"] in (3001, 3005, 2005, 1008)
        assert ev["time"] == int(_rec(t).at.timestamp() * 1000)
