"""Seed state, reads, restart and concurrency of the mock IdP, over real sockets."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from stanch.mock_idp.testing import start_mock_idp

SEEDED = {"u-alice", "u-bob", "sa-deploy", "app-reporting", "tok-ci"}


def test_seed_has_the_demo_identities(idp: httpx.Client) -> None:
    listed = idp.get("/identities").json()
    assert {i["id"] for i in listed} == SEEDED
    alice = idp.get("/identities/u-alice").json()
    assert alice["kind"] == "user" and alice["upn"] == "alice@example.com"
    assert alice["display_name"] == "Alice Ng" and alice["status"] == "active"
    assert alice["groups"] == [
        {"name": "break-glass-admins", "privileged": True},
        {"name": "employees", "privileged": False},
        {"name": "engineering", "privileged": False},
        {"name": "prod-admins", "privileged": True},
    ]
    assert [s["id"] for s in alice["sessions"]] == ["sess-alice-0001", "sess-alice-0002"]
    assert sorted(c["type"] for c in alice["credentials"]) == ["mfa", "password"]
    assert all(set(c) == {"id", "type", "status", "created_at"} for c in alice["credentials"])
    deploy = idp.get("/identities/sa-deploy").json()
    assert deploy["kind"] == "service_account"
    assert deploy["credentials"][0]["id"] == "AKIAMOCKDEPLOY0001"
    assert deploy["credentials"][0]["type"] == "api_key"
    assert {"name": "prod-deployers", "privileged": True} in deploy["groups"]
    app = idp.get("/identities/app-reporting").json()
    assert app["kind"] == "oauth_app"
    assert {g["name"]: g["privileged"] for g in app["groups"]} == {
        "reports.read": False, "users.read.all": True, "mail.send": True}
    assert app["credentials"][0]["type"] == "client_secret"
    tok = idp.get("/identities/tok-ci").json()
    assert tok["kind"] == "token"
    assert {"name": "registry-push", "privileged": True} in tok["groups"]
    bob = idp.get("/identities/u-bob").json()
    assert len(bob["sessions"]) == 1
    assert {"name": "payments-approvers", "privileged": True} in bob["groups"]
    assert idp.get("/healthz").json() == {"status": "ok"}
    assert idp.get("/changes").json() == []


def test_unknown_identity_is_404_with_a_reason(idp: httpx.Client) -> None:
    resp = idp.get("/identities/u-nobody")
    assert resp.status_code == 404
    assert resp.json()["error"] == "NoSuchEntity"
    assert "u-nobody" in resp.json()["message"]
    for path in ("/identities/u-nobody/disable", "/identities/u-nobody/sessions/revoke"):
        assert idp.post(path).status_code == 404
    assert idp.post("/identities/u-alice/credentials/nope/activate").json()["error"] == (
        "NoSuchCredential")
    assert idp.get("/changes").json() == []


def test_restart_keeps_state_and_does_not_reseed(tmp_path: Path) -> None:
    url, stop = start_mock_idp(tmp_path)
    try:
        httpx.post(f"{url}/identities/u-alice/groups/remove", json={"groups": ["prod-admins"]},
                   headers={"Idempotency-Key": "k-restart"}).raise_for_status()
        httpx.post(f"{url}/identities/u-bob/disable").raise_for_status()
    finally:
        stop()
    url, stop = start_mock_idp(tmp_path)
    try:
        alice = httpx.get(f"{url}/identities/u-alice").json()
        assert "prod-admins" not in {g["name"] for g in alice["groups"]}
        assert httpx.get(f"{url}/identities/u-bob").json()["status"] == "disabled"
        changes = httpx.get(f"{url}/changes").json()
        assert [(c["op"], c["idempotency_key"]) for c in changes] == [
            ("group.remove", "k-restart"), ("identity.disable", None)]
    finally:
        stop()


def test_reset_restores_the_seed(idp: httpx.Client) -> None:
    seed = idp.get("/identities").json()
    idp.post("/identities/u-alice/sessions/revoke").raise_for_status()
    idp.post("/faults", json={"latency_ms": 1, "path": "^/never"}).raise_for_status()
    idp.post("/reset").raise_for_status()
    assert idp.get("/identities").json() == seed
    assert idp.get("/changes").json() == []
    assert idp.get("/faults").json() == []


async def test_concurrent_writes_from_two_servers_on_one_file(tmp_path: Path) -> None:
    """Two server processes' worth of connections race; each effect is recorded once."""
    url_a, stop_a = start_mock_idp(tmp_path)
    url_b, stop_b = start_mock_idp(tmp_path)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async def remove(url: str, group: str) -> dict[str, object]:
                resp = await client.post(f"{url}/identities/u-alice/groups/remove",
                                         json={"groups": [group]})
                resp.raise_for_status()
                data: dict[str, object] = resp.json()
                return data

            calls = [remove(url, g) for _ in range(10) for url in (url_a, url_b)
                     for g in ("prod-admins", "break-glass-admins")]
            results = await asyncio.gather(*calls)
        assert sum(bool(r["changed"]) for r in results) == 2
        changes = httpx.get(f"{url_a}/changes", params={"identity": "u-alice"}).json()
        assert sorted(c["detail"]["name"] for c in changes) == ["break-glass-admins",
                                                                "prod-admins"]
        assert len(httpx.get(f"{url_b}/identities").json()) == 5  # seeded once, not twice
    finally:
        stop_a()
        stop_b()


def test_new_secrets_are_stored_only_as_digests(tmp_path: Path) -> None:
    url, stop = start_mock_idp(tmp_path)
    try:
        resp = httpx.post(f"{url}/identities/sa-deploy/credentials/rotate", json={})
        secret = resp.json()["secret"]
        assert secret and len(secret) >= 32
        assert secret not in httpx.get(f"{url}/identities/sa-deploy").text
        assert secret not in httpx.get(f"{url}/changes").text
    finally:
        stop()
    with sqlite3.connect(tmp_path / "mock_idp.db") as db:
        dumped = "\n".join(db.iterdump())
    assert secret not in dumped
    for wal in tmp_path.glob("mock_idp.db*"):
        assert secret.encode() not in wal.read_bytes()
