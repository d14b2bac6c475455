"""The audit API: filters, paging, verify — and that auth can be added at include time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from stanch.api import routes_audit
from stanch.audit import SqliteAuditStore
from stanch.config import load_settings
from stanch.models import AuditType

from .helpers import event


def _viewer(authorization: str | None = Header(default=None)) -> None:
    if authorization != "Bearer viewer":
        raise HTTPException(status_code=401, detail="who are you?")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, SqliteAuditStore]]:
    store = SqliteAuditStore(tmp_path / "audit.db")
    app = FastAPI()
    app.state.audit = store
    app.state.settings = load_settings(audit={"checkpoint_key": "k" * 32})
    app.include_router(routes_audit.router, dependencies=[Depends(_viewer)])
    with TestClient(app, headers={"Authorization": "Bearer viewer"}) as c:
        yield c, store
    store.close()


def test_filters_and_paging(client: tuple[TestClient, SqliteAuditStore]) -> None:
    c, store = client
    store.append_many([event(i) for i in range(10)])
    store.append(event(10, type=AuditType.decision_recorded, subject="mock:user-1"))
    body = c.get("/v1/audit", params={"identity": "mock:user-1"}).json()
    assert [r["seq"] for r in body["records"]] == [2, 5, 8, 11]
    assert body["next_after_seq"] == 11
    page = c.get("/v1/audit", params={"limit": 4, "after_seq": 4}).json()
    assert [r["seq"] for r in page["records"]] == [5, 6, 7, 8]
    assert page["next_after_seq"] == 8
    assert c.get("/v1/audit", params={"after_seq": 11}).json() == {"records": [],
                                                                   "next_after_seq": 11}
    typed = c.get("/v1/audit", params=[("type", "decision.recorded,alert.received"),
                                       ("workflow_id", "containment-wf0"),
                                       ("since", "2025-03-01T12:00:04Z"),
                                       ("until", "2025-03-01T12:00:09Z")]).json()
    assert [r["seq"] for r in typed["records"]] == [5, 7, 9]
    assert [r["seq"] for r in c.get("/v1/audit", params={"alert_id": "alert-3"}
                                    ).json()["records"]] == [4]
    rec = body["records"][0]
    assert {"actor", "subject", "workflow_id", "alert_ids", "reason", "ticket", "hash",
            "prev_hash"} <= rec.keys()


def test_bad_parameters(client: tuple[TestClient, SqliteAuditStore]) -> None:
    c, _ = client
    assert c.get("/v1/audit", params={"limit": 1001}).status_code == 422
    bad = c.get("/v1/audit", params={"type": "action.nope"})
    assert bad.status_code == 422 and "action.nope" in bad.json()["detail"]
    assert c.get("/v1/audit", headers={"Authorization": "Bearer x"}).status_code == 401
    assert c.get("/v1/audit/verify", headers={"Authorization": ""}).status_code == 401


def test_verify_uses_the_configured_key(client: tuple[TestClient, SqliteAuditStore]) -> None:
    c, store = client
    store.append_many([event(i) for i in range(3)])
    store.checkpoint(b"k" * 32, event(5).at)
    report = c.get("/v1/audit/verify").json()
    assert report["ok"] and report["signatures_checked"] and report["checkpoints"] == 1
    store.checkpoint(b"not the configured key", event(6).at)
    report = c.get("/v1/audit/verify").json()
    assert not report["ok"] and "invalid signature" in report["problem"]
