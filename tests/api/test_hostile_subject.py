"""A contained identity's own principal cannot undo its containment; refusals are audited.

Over a real socket: the API served by uvicorn, a real worker on the Temporal dev server, the
mock IdP. Alice (a responder whose token says she *is* ``mock:u-alice``) is contained by
an admin and then tries, with her own token, every way out: rollback, resolve, confirm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings
from stanch.models import containment_workflow_id
from stanch.worker import build_worker
from tests.cli.server import serving

ALICE_WID = containment_workflow_id("mock", "u-alice")
PEOPLE: dict[str, tuple[list[str], list[str], list[str]]] = {
    # principal → (roles, groups, identity keys)
    "admin": (["responder", "approver"], ["secops", "soc-approvers"], []),
    "alice": (["responder", "approver"], ["secops", "soc-approvers"], ["mock:u-alice"]),
    "alias-alice": (["responder"], ["secops"], ["okta:00u1abcd2EFGH3ijk4l5"]),
    "watcher": (["viewer"], [], []),
}
TOKENS = {who: f"tok-hostile-{who}-0123456789" for who in PEOPLE}


class Api:
    def __init__(self, url: str, store: SqliteAuditStore) -> None:
        self.url = url
        self.store = store

    async def call(self, who: str, method: str, path: str,
                   body: dict[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.request(method, path, json=body,
                                      headers={"Authorization": f"Bearer {TOKENS[who]}"})

    async def wait(self, pred: Callable[[dict[str, Any]], bool],
                   timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = await self.call("watcher", "GET", f"/v1/containments/{ALICE_WID}")
            if r.status_code == 200:
                st = r.json()
                if pred(st):
                    return st
            await asyncio.sleep(0.1)
        raise AssertionError(f"condition not reached; last status: {st}")


async def _terminate(env: WorkflowEnvironment, wid: str) -> None:
    try:
        await env.client.get_workflow_handle(wid).terminate(reason="test isolation")
    except RPCError:
        pass  # not running


@pytest_asyncio.fixture()
async def api(dev_env: WorkflowEnvironment, settings: Settings,
              task_queue: str) -> AsyncIterator[Api]:
    await _terminate(dev_env, ALICE_WID)
    settings.temporal.task_queue = task_queue
    settings.api_tokens = [ApiToken(sha256=hash_token(TOKENS[who]), principal=who, roles=r,
                                    groups=g, identity_keys=k)
                           for who, (r, g, k) in PEOPLE.items()]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client)
    try:
        async with build_worker(dev_env.client, settings, store, task_queue=task_queue):
            with serving(app) as url:
                yield Api(url, store)
            await _terminate(dev_env, ALICE_WID)
    finally:
        store.close()


def _refusals(store: SqliteAuditStore, actor: str) -> list[Any]:
    return [r for r in store.query(types=["access.refused", "decision.refused"])
            if r.actor == actor]


async def test_the_contained_principal_cannot_undo_its_own_containment(api: Api) -> None:
    r = await api.call("admin", "POST", "/v1/containments", {
        "identity": "mock:u-alice", "level": "reduce_scope", "reason": "session theft"})
    assert r.status_code == 202, r.text
    st = await api.wait(lambda s: any(x["status"] == "applied" for x in s["steps"]))
    applied = next(x for x in st["steps"] if x["status"] == "applied")

    attempts = {
        "rollback": ("alice", f"/v1/containments/{ALICE_WID}/rollback",
                     {"reason": "it was me all along"}),
        "resolve": ("alice", f"/v1/containments/{ALICE_WID}/resolve",
                    {"verdict": "false_positive", "reason": "nothing to see"}),
        "confirm": ("alice", f"/v1/containments/{ALICE_WID}/confirm",
                    {"step": applied["step_id"]}),
        # Under an alias the inventory lists for u-alice (her Okta id), not her mock key.
        "alias rollback": ("alias-alice", f"/v1/containments/{ALICE_WID}/rollback",
                           {"reason": "another name, same person"}),
    }
    for what, (who, path, body) in attempts.items():
        resp = await api.call(who, "POST", path, body)
        assert resp.status_code == 403, (what, resp.status_code, resp.text)
        assert "identity under containment" in resp.json()["detail"], what

    st = await api.wait(lambda s: True)
    assert st["state"] != "resolved"
    assert any(x["status"] == "applied" for x in st["steps"])  # nothing was undone

    # Each refusal is in the chain: who, what, why.
    alice = _refusals(api.store, "alice")
    assert {r.data["what"] for r in alice} == {
        "POST /v1/containments/{workflow_id}/rollback",
        "POST /v1/containments/{workflow_id}/resolve",
        "POST /v1/containments/{workflow_id}/confirm"}
    assert all(r.type.value == "access.refused" and r.workflow_id == ALICE_WID
               and r.data["refusal"] == "SubjectRefused"
               and "identity under containment" in (r.reason or "") for r in alice)
    assert len(_refusals(api.store, "alias-alice")) == 1

    # Someone else may still roll it back.
    resp = await api.call("admin", "POST", f"/v1/containments/{ALICE_WID}/rollback",
                          {"reason": "cleared by the SOC"})
    assert resp.status_code == 200, resp.text


async def test_a_viewer_trying_to_approve_leaves_a_decision_refused_record(api: Api) -> None:
    resp = await api.call("watcher", "POST", f"/v1/containments/{ALICE_WID}/decisions",
                          {"step": "s1", "verdict": "approve", "comment": "let me"})
    assert resp.status_code == 403
    resp2 = await api.call("watcher", "POST", f"/v1/containments/{ALICE_WID}/rollback",
                           {"reason": "let me"})
    assert resp2.status_code == 403
    # A role refusal on a read is not a state change: not audited.
    assert (await api.call("watcher", "GET", "/v1/audit")).status_code == 200
    records = _refusals(api.store, "watcher")
    kinds = sorted((r.type.value, r.data["what"]) for r in records)
    assert kinds == [
        ("access.refused", "POST /v1/containments/{workflow_id}/rollback"),
        ("decision.refused", "POST /v1/containments/{workflow_id}/decisions"),
    ]
    assert all(r.data["refusal"] == "role" and "lacks the" in (r.reason or "")
               for r in records)
    # An unauthenticated caller is refused (401) and never written into the chain.
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        resp = await http.post(f"/v1/containments/{ALICE_WID}/decisions",
                               json={"step": "s1", "verdict": "approve"},
                               headers={"Authorization": "Bearer made-up"})
    assert resp.status_code == 401
    assert len(api.store.query(types=["access.refused", "decision.refused"])) == 2
