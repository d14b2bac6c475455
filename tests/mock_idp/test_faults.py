"""Fault injection: errors, Retry-After, latency, hangs, filters, seeds; faults change nothing."""

from __future__ import annotations

import threading
import time

import httpx
import pytest


def test_429_carries_retry_after_and_changes_nothing(idp: httpx.Client) -> None:
    idp.post("/faults", json={"status": 429, "retry_after": 2, "count": 1}).raise_for_status()
    resp = idp.post("/identities/u-alice/sessions/revoke", headers={"Idempotency-Key": "f"})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    assert resp.json()["error"] == "Throttling"
    assert len(idp.get("/identities/u-alice").json()["sessions"]) == 2
    assert idp.get("/changes").json() == []
    assert idp.get("/faults").json() == []  # count used up
    assert idp.post("/identities/u-alice/sessions/revoke").json()["changed"] is True


def test_filters_by_identity_path_and_method(idp: httpx.Client) -> None:
    idp.post("/faults", json={"rules": [
        {"status": 403, "identity": "u-bob"},
        {"status": 500, "path": r"/credentials/", "methods": ["delete"]},
    ]}).raise_for_status()
    assert idp.get("/identities/u-bob").status_code == 403
    assert idp.get("/identities/u-alice").status_code == 200
    assert idp.delete("/identities/u-alice/credentials/mfa-alice-0001").status_code == 500
    assert idp.post("/identities/u-alice/credentials/mfa-alice-0001/deactivate").is_success
    rules = idp.get("/faults").json()
    assert [r["applied"] for r in rules] == [1, 1]
    idp.delete("/faults").raise_for_status()
    assert idp.get("/identities/u-bob").status_code == 200


def test_seeded_error_rate_is_repeatable(idp: httpx.Client) -> None:
    def run() -> list[int]:
        idp.delete("/faults")
        idp.post("/faults", json={"seed": 7, "error_rate": 0.5, "status": 503,
                                  "path": "^/identities/u-bob$"}).raise_for_status()
        return [idp.get("/identities/u-bob").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {200, 503} == set(first)


def test_latency_and_timeouts(idp: httpx.Client) -> None:
    idp.post("/faults", json={"latency_ms": 300, "count": 1}).raise_for_status()
    started = time.monotonic()
    assert idp.get("/identities/u-alice").is_success
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    idp.get("/identities/u-alice")
    assert time.monotonic() - started < 0.3

    idp.post("/faults", json={"timeout_rate": 1.0, "hang_ms": 800, "count": 1,
                              "path": "disable"}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        idp.post("/identities/u-bob/disable", timeout=0.2)
    time.sleep(0.8)
    assert idp.get("/identities/u-bob").json()["status"] == "active"
    assert idp.get("/changes").json() == []


def test_invalid_rules_are_refused(idp: httpx.Client) -> None:
    assert idp.post("/faults", json={"path": "("}).status_code == 422
    assert idp.post("/faults", json={"status": 200}).status_code == 422
    assert idp.post("/faults", json={"bogus": 1}).status_code == 422
    assert idp.get("/faults").json() == []


def test_reply_latency_delays_the_answer_not_the_write(idp: httpx.Client,
                                                       mock_idp_url: str) -> None:
    idp.post("/faults", json={"reply_latency_ms": 1500, "identity": "u-alice",
                              "methods": ["POST"], "count": 1}).raise_for_status()
    answer: dict[str, float] = {}

    def write() -> None:
        with httpx.Client(base_url=mock_idp_url) as c:
            t0 = time.monotonic()
            c.post("/identities/u-alice/sessions/revoke", headers={"Idempotency-Key": "late"})
            answer["s"] = time.monotonic() - t0

    thread = threading.Thread(target=write)
    thread.start()
    deadline = time.monotonic() + 1.0
    changes: list[dict[str, object]] = []
    while not changes and time.monotonic() < deadline:
        changes = idp.get("/changes").json()
    # The change is in the log while the writer still waits for its answer.
    assert [c["op"] for c in changes] == ["sessions.revoke"] and "s" not in answer
    thread.join(5)
    assert answer["s"] >= 1.5
