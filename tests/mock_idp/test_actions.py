"""Every action of the mock IdP: effect, idempotency, and one change record per effect."""

from __future__ import annotations

from typing import Any

import httpx


def _changes(idp: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = idp.get("/changes", params=params).json()
    return data


def _post(idp: httpx.Client, path: str, key: str | None = None,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = idp.post(path, json=body, headers={"Idempotency-Key": key} if key else None)
    assert resp.is_success, resp.text
    data: dict[str, Any] = resp.json()
    # Every write answers with the identity as it is after the write: the same as a read.
    after = data.pop("identity")
    assert after == idp.get(path.split("/")[0] + "/identities/" + path.split("/")[2]).json()
    return data


def test_group_remove_and_add_are_idempotent(idp: httpx.Client) -> None:
    body = {"groups": ["prod-admins", "not-a-member"]}
    first = _post(idp, "/identities/u-alice/groups/remove", "k1", body)
    assert first == {"changed": True, "removed": [{"name": "prod-admins", "privileged": True}]}
    again = _post(idp, "/identities/u-alice/groups/remove", "k1", body)
    assert again == {"changed": False, "removed": []}
    changes = _changes(idp, identity="u-alice")
    assert [(c["op"], c["detail"], c["idempotency_key"]) for c in changes] == [
        ("group.remove", {"name": "prod-admins", "privileged": True}, "k1")]

    add = {"groups": [{"name": "prod-admins", "privileged": True}]}
    assert _post(idp, "/identities/u-alice/groups/add", "k2", add)["changed"] is True
    assert _post(idp, "/identities/u-alice/groups/add", "k2", add)["changed"] is False
    assert [c["op"] for c in _changes(idp, since=changes[-1]["seq"])] == ["group.add"]
    assert idp.get("/identities/u-alice").json()["groups"][3] == add["groups"][0]


def test_session_revoke_is_idempotent(idp: httpx.Client) -> None:
    first = _post(idp, "/identities/u-alice/sessions/revoke", "s1")
    assert first["revoked"] == ["sess-alice-0001", "sess-alice-0002"]
    assert _post(idp, "/identities/u-alice/sessions/revoke", "s1") == {
        "changed": False, "revoked": []}
    assert idp.get("/identities/u-alice").json()["sessions"] == []
    (change,) = _changes(idp)
    assert change["op"] == "sessions.revoke" and change["idempotency_key"] == "s1"
    assert change["detail"]["session_ids"] == ["sess-alice-0001", "sess-alice-0002"]


def test_disable_enable_are_idempotent(idp: httpx.Client) -> None:
    assert _post(idp, "/identities/u-bob/disable", "d")["changed"] is True
    assert _post(idp, "/identities/u-bob/disable", "d")["changed"] is False
    assert idp.get("/identities/u-bob").json()["status"] == "disabled"
    assert _post(idp, "/identities/u-bob/enable", "e")["changed"] is True
    assert _post(idp, "/identities/u-bob/enable", "e")["changed"] is False
    assert [(c["op"], c["idempotency_key"]) for c in _changes(idp)] == [
        ("identity.disable", "d"), ("identity.enable", "e")]


def test_credential_activate_deactivate_delete(idp: httpx.Client) -> None:
    base = "/identities/u-bob/credentials/pwd-bob-0001"
    resp = idp.delete(base)
    assert resp.status_code == 409 and resp.json()["error"] == "CredentialActive"
    assert _post(idp, f"{base}/deactivate", "x")["changed"] is True
    assert _post(idp, f"{base}/deactivate", "x")["changed"] is False
    assert _post(idp, f"{base}/activate", "y")["changed"] is True
    assert _post(idp, f"{base}/activate", "y")["changed"] is False
    _post(idp, f"{base}/deactivate")
    deleted = idp.delete(base, headers={"Idempotency-Key": "z"}).json()
    assert deleted.pop("identity")["credentials"] == []
    assert deleted == {"changed": True, "deleted": "pwd-bob-0001"}
    gone = idp.delete(base)
    assert gone.status_code == 404 and gone.json()["error"] == "NoSuchCredential"
    assert idp.get("/identities/u-bob").json()["credentials"] == []
    assert [c["op"] for c in _changes(idp)] == [
        "credential.deactivate", "credential.activate", "credential.deactivate",
        "credential.delete"]


def test_rotate_issues_once_replays_and_hits_the_limit(idp: httpx.Client) -> None:
    resp = idp.post("/identities/sa-deploy/credentials/rotate", json={},
                    headers={"Idempotency-Key": "r1"})
    assert resp.status_code == 201
    first = resp.json()
    assert first["old_credential_id"] == "AKIAMOCKDEPLOY0001"
    new_id = first["new_credential_id"]
    assert new_id.startswith("AKIAMOCK") and len(new_id) == 20
    creds = {c["id"]: c for c in idp.get("/identities/sa-deploy").json()["credentials"]}
    assert creds["AKIAMOCKDEPLOY0001"]["status"] == "inactive"
    assert creds[new_id]["status"] == "active" and creds[new_id]["type"] == "api_key"

    replay = idp.post("/identities/sa-deploy/credentials/rotate", json={},
                      headers={"Idempotency-Key": "r1"})
    assert replay.status_code == 200
    assert replay.json()["new_credential_id"] == new_id
    assert replay.json()["replayed"] is True and replay.json()["secret"] is None
    assert len(_changes(idp, idempotency_key="r1")) == 1

    limit = idp.post("/identities/sa-deploy/credentials/rotate", json={},
                     headers={"Idempotency-Key": "r2"})
    assert limit.status_code == 409 and limit.json()["error"] == "LimitExceeded"
    assert _changes(idp, idempotency_key="r2") == []
    assert idp.delete("/identities/sa-deploy/credentials/AKIAMOCKDEPLOY0001").is_success
    again = idp.post("/identities/sa-deploy/credentials/rotate", json={"credential_id": new_id})
    assert again.status_code == 201 and again.json()["old_credential_id"] == new_id


def test_rotate_by_type_and_refusals(idp: httpx.Client) -> None:
    mfa = idp.post("/identities/u-alice/credentials/rotate", json={"type": "mfa"}).json()
    assert mfa["old_credential_id"] == "mfa-alice-0001" and mfa["type"] == "mfa"
    pwd = idp.post("/identities/u-alice/credentials/rotate").json()
    assert pwd["old_credential_id"] == "pwd-alice-0001"  # default skips MFA factors
    bad = idp.post("/identities/u-alice/credentials/rotate", json={"type": "kerberos"})
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidInput"
    for cid in ("tok-ci-0001",):
        idp.post(f"/identities/tok-ci/credentials/{cid}/deactivate").raise_for_status()
    none = idp.post("/identities/tok-ci/credentials/rotate")
    assert none.status_code == 409 and none.json()["error"] == "NoActiveCredential"


def test_changes_filters(idp: httpx.Client) -> None:
    _post(idp, "/identities/u-alice/sessions/revoke", "a")
    _post(idp, "/identities/u-bob/sessions/revoke", "b")
    _post(idp, "/identities/u-bob/disable", "b")
    everything = _changes(idp)
    assert [c["seq"] for c in everything] == sorted(c["seq"] for c in everything)
    assert len(everything) == 3
    assert {c["identity_id"] for c in _changes(idp, identity="u-bob")} == {"u-bob"}
    assert len(_changes(idp, since=everything[0]["seq"])) == 2
    assert len(_changes(idp, identity="u-bob", idempotency_key="b")) == 2
    assert all(set(c) == {"seq", "at", "identity_id", "op", "detail", "idempotency_key"}
               for c in everything)
