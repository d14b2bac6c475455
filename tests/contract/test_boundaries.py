"""Text and bounds at the boundary, over a real socket: a value Stanch cannot hold is a 422
naming the field (problem details), never a 500, and never fails anyone else's request."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from stanch.models import Alert
from tests.contract.conftest import ContractStack

pytestmark = pytest.mark.e2e

SURROGATE = "bad \ud800 text"  # valid JSON once escaped, not Unicode
NUL = "bad \x00 text"
FAKE_WID = "containment-" + "0" * 24
FAKE_EID = "elevation-" + "0" * 24


def _raw(doc: dict[str, Any]) -> bytes:
    """JSON as a client would send it: `ensure_ascii` writes the surrogate as `\\ud800`."""
    return json.dumps(doc).encode()


def _generic(i: int, *, bad: bool) -> dict[str, Any]:
    # Most alerts name nobody Stanch knows (accepted, audited as unresolved); every 20th
    # names Alice, so containment is dispatched for real beside the storm.
    name = "alice@example.com" if i % 20 == 0 else f"storm-{i}@example.com"
    return {"id": f"storm-{i:04d}", "title": SURROGATE if bad else f"storm alert {i}",
            "category": "privilege_escalation", "severity": "high",
            "identities": [{"name": name, "type": "upn", "kind": "user"}]}


async def test_a_storm_with_one_bad_alert_in_seven_fails_only_the_bad_ones(
        contract_stack: ContractStack) -> None:
    stack = contract_stack
    n = 280
    statuses: dict[int, int] = {}
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as http:

        async def send(i: int) -> None:
            async with sem:
                r = await http.post("/v1/alerts/generic", headers=stack.source,
                                    content=_raw(_generic(i, bad=i % 7 == 3)))
            statuses[i] = r.status_code
            if i % 7 == 3:
                assert r.headers["content-type"] == "application/problem+json", r.text
                assert "$.title" in r.json()["detail"] and "surrogate" in r.json()["detail"]

        await asyncio.gather(*(send(i) for i in range(n)))
    good = [i for i in range(n) if i % 7 != 3]
    bad = [i for i in range(n) if i % 7 == 3]
    assert Counter(statuses[i] for i in good) == Counter({202: len(good)})
    assert Counter(statuses[i] for i in bad) == Counter({422: len(bad)})
    for i in good:  # every good alert is in the chain
        alert_id = Alert.make_id("generic", f"storm-{i:04d}")
        assert stack.store.find(f"received:{alert_id}") is not None, i
    env = {**os.environ, "STANCH_CONFIG": str(stack.settings.state_dir / "none.toml"),
           "STANCH_AUDIT__SQLITE_PATH": str(stack.settings.audit_sqlite_path)}
    verify = subprocess.run([sys.executable, "-m", "stanch.cli", "audit", "verify"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and verify.stdout.startswith("ok:"), verify.stderr


# (method, path, body with the bad text, the field the problem must name)
TEXT_FIELDS = [
    ("POST", "/v1/containments", {"identity": "mock:u-alice", "level": "revoke",
                                  "reason": "{}"}, "body.reason"),
    ("POST", "/v1/containments", {"identity": "{}", "level": "revoke",
                                  "reason": "a reason"}, "body.identity"),
    ("POST", f"/v1/containments/{FAKE_WID}/decisions",
     {"step": "s", "verdict": "approve", "comment": "{}"}, "body.comment"),
    ("POST", f"/v1/containments/{FAKE_WID}/confirm", {"step": "{}"}, "body.step"),
    ("POST", f"/v1/containments/{FAKE_WID}/rollback", {"reason": "{}"}, "body.reason"),
    ("POST", f"/v1/containments/{FAKE_WID}/resolve",
     {"verdict": "false_positive", "reason": "{}"}, "body.reason"),
    ("POST", "/v1/elevations", {"principal": "mock:u-alice", "scopes": ["prod-admins"],
                                "duration": "30m", "reason": "{}"}, "body.reason"),
    ("POST", "/v1/elevations", {"principal": "mock:u-alice", "scopes": ["{}"],
                                "duration": "30m", "reason": "a reason"}, "body.scopes.0"),
    ("POST", f"/v1/elevations/{FAKE_EID}/decisions", {"verdict": "deny", "comment": "{}"},
     "body.comment"),
    ("POST", f"/v1/elevations/{FAKE_EID}/revoke", {"reason": "{}"}, "body.reason"),
]


@pytest.mark.parametrize("bad", [SURROGATE, NUL], ids=["surrogate", "nul"])
async def test_bad_text_in_any_field_is_a_422_naming_it(contract_stack: ContractStack,
                                                        bad: str) -> None:
    async with httpx.AsyncClient(base_url=contract_stack.url, timeout=30,
                                 headers=contract_stack.operator) as http:
        for method, path, body, field in TEXT_FIELDS:
            doc = json.loads(json.dumps(body).replace('"{}"', json.dumps(bad)))
            r = await http.request(method, path, content=_raw(doc),
                                   headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (path, field, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert [e["field"] for e in problem["errors"]] == [field], (path, problem)
            assert problem["status"] == 422 and problem["title"] == "Unprocessable Entity"
        r = await http.get("/v1/audit", params={"identity": NUL})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.identity"


async def test_bounds_are_422s_not_clamps_or_500s(contract_stack: ContractStack) -> None:
    async with httpx.AsyncClient(base_url=contract_stack.url, timeout=30,
                                 headers=contract_stack.operator) as http:
        for path, params in (("/v1/containments", {"limit": -6656}),
                             ("/v1/containments", {"limit": 10**9}),
                             ("/v1/containments", {"status": "Robert'); DROP"}),
                             ("/v1/elevations", {"limit": 0}),
                             ("/v1/audit", {"after_seq": 2**63}),
                             ("/v1/audit", {"until": "0.5"}),
                             ("/v1/audit", {"type": "action.nope"})):
            r = await http.get(path, params=params)
            assert r.status_code == 422, (path, params, r.text)
            assert r.json()["errors"][0]["field"].startswith(f"query.{next(iter(params))}")
        for body in ({"identity": "mock:u-alice", "level": "notify", "reason": "because"},
                     {"identity": "mock:u-alice", "level": "revoke", "reason": "  a  "}):
            r = await http.post("/v1/containments", json=body)
            assert r.status_code == 422, (body, r.text)
        for duration in ("0m", "30", "10w", "1000000w", "30m1h", "1h " * 6):
            r = await http.post("/v1/elevations", json={
                "principal": "mock:u-alice", "scopes": ["prod-admins"], "duration": duration,
                "reason": "a reason"})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.duration"
        for field, body in (("body.scopes", {"scopes": [f"s{i}" for i in range(65)]}),
                            ("body.reason", {"reason": "x" * 4097})):
            r = await http.post("/v1/elevations", json={
                "principal": "mock:u-alice", "scopes": ["prod-admins"], "duration": "30m",
                "reason": "a reason", **body})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        r = await http.get("/v1/audit", params={"since": "0001-01-01T00:00:00+01:00",
                                                "until": "9999-12-31T23:59:59-01:00"})
        assert r.status_code == 200


async def test_every_error_is_one_problem_shape(contract_stack: ContractStack) -> None:
    async with httpx.AsyncClient(base_url=contract_stack.url, timeout=30) as http:
        answers = {
            401: await http.get("/v1/containments"),
            404: await http.get("/v1/nothing-here"),
            405: await http.request("OPTIONS", "/v1/containments"),
            422: await http.post("/v1/containments", headers=contract_stack.operator,
                                 content=b"{not json", ),
        }
        wrong = await http.post("/v1/alerts/generic", content=b"{}",
                                headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        answers[401] = wrong
        for status, r in answers.items():
            assert r.status_code == status, r.text
            assert r.headers["content-type"] == "application/problem+json", status
            body = r.json()
            assert {"type", "title", "status", "detail", "code"} <= body.keys(), body
            assert body["status"] == status and isinstance(body["detail"], str)
        assert answers[405].headers["allow"] == "GET, POST"
        for method, path, allow in (("DELETE", "/healthz", "GET"),
                                    ("PUT", f"/v1/containments/{FAKE_WID}", "GET"),
                                    ("GET", f"/v1/containments/{FAKE_WID}/rollback", "POST"),
                                    ("PATCH", "/v1/elevations", "GET, POST")):
            r = await http.request(method, path)
            assert r.status_code == 405 and r.headers["allow"] == allow, (method, path)


async def test_a_closed_containment_is_read_from_its_result(
        contract_stack: ContractStack, dev_env: WorkflowEnvironment) -> None:
    """Once a containment has completed, GET answers from its result (no history replay)."""
    async with httpx.AsyncClient(base_url=contract_stack.url, timeout=60,
                                 headers=contract_stack.operator) as http:
        r = await http.post("/v1/containments", json={
            "identity": "mock:u-bob", "level": "reduce_scope", "reason": "contract test"})
        assert r.status_code == 202, r.text
        wid = r.json()["workflow_id"]
        for _ in range(200):
            state = (await http.get(f"/v1/containments/{wid}")).json()["state"]
            if state == "contained":
                break
            await asyncio.sleep(0.1)
        r = await http.post(f"/v1/containments/{wid}/resolve",
                            json={"verdict": "true_positive", "reason": "confirmed"})
        assert r.status_code == 200, r.text
        handle = dev_env.client.get_workflow_handle(wid)
        for _ in range(200):
            if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
                break
            await asyncio.sleep(0.1)
        assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
        r = await http.get(f"/v1/containments/{wid}")
        assert r.status_code == 200 and r.json()["state"] == "resolved"
        assert r.json()["workflow_id"] == wid
