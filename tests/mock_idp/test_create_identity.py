"""`POST /identities`: tests that need many identities create them (set-up, not an effect)."""

from __future__ import annotations

import httpx


def _body(ident: str) -> dict:  # type: ignore[type-arg]
    return {"id": ident, "kind": "user", "upn": f"{ident}@example.com",
            "groups": [{"name": "employees"}, {"name": "prod-admins", "privileged": True}],
            "sessions": [f"sess-{ident}"],
            "credentials": [{"id": f"pwd-{ident}", "type": "password"}]}


def test_created_identity_is_readable_and_actionable(idp: httpx.Client) -> None:
    r = idp.post("/identities", json=_body("u-new-1"))
    assert r.status_code == 201, r.text
    state = r.json()
    assert {g["name"] for g in state["groups"]} == {"employees", "prod-admins"}
    assert state["status"] == "active" and state["credentials"][0]["status"] == "active"
    assert idp.get("/changes", params={"identity": "u-new-1"}).json() == []
    r = idp.post("/identities/u-new-1/groups/remove", json={"groups": ["prod-admins"]},
                 headers={"Idempotency-Key": "k1"})
    assert r.json()["changed"] is True
    assert len(idp.get("/changes", params={"identity": "u-new-1"}).json()) == 1


def test_create_refuses_duplicates_and_bad_input(idp: httpx.Client) -> None:
    assert idp.post("/identities", json=_body("u-new-2")).status_code == 201
    dup = idp.post("/identities", json=_body("u-new-2"))
    assert dup.status_code == 409 and dup.json()["error"] == "EntityAlreadyExists"
    bad = _body("u-new-3") | {"credentials": [{"id": "x", "type": "nope"}]}
    assert idp.post("/identities", json=bad).status_code == 400
    assert idp.post("/identities", json={"id": "bad/id"}).status_code == 422
    assert idp.get("/identities/u-alice").status_code == 200  # the seed is untouched
