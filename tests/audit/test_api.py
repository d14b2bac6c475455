"""The audit API: filters, paging, verify — and that auth can be added at include time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from stanch.api import problems, routes_audit
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
    problems.install(app)
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
    typed = c.get("/v1/audit", params=[("type", "decision.recorded"),
                                       ("type", "alert.received"),
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
    c, store = client
    store.append_many([event(i) for i in range(11)])
    assert c.get("/v1/audit", params={"limit": 1001}).status_code == 422
    bad = c.get("/v1/audit", params={"type": "action.nope"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in bad.json()["errors"]] == ["query.type.0"]
    for params in ({"after_seq": 2**63}, {"limit": 0}, {"until": "0.5"},
                   {"since": "2026-01-01T00:00:00"}, {"since": "2026-01-01T00:00:00+24:00"},
                   {"identity": "a\x00b"}):
        bad = c.get("/v1/audit", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["errors"][0]["field"] == f"query.{next(iter(params))}"
    # The calendar's edges with an offset are instants before or after every record.
    for since, until, n in (("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", 11),
                            ("0000-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", 0),
                            ("9999-12-31T23:59:59-23:59", "9999-12-31T23:59:60Z", 0)):
        page = c.get("/v1/audit", params={"since": since, "until": until, "limit": 100})
        assert page.status_code == 200 and len(page.json()["records"]) == n, (since, until)
    assert c.get("/v1/audit", params={"after_seq": 2**63 - 1}).json()["records"] == []
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
