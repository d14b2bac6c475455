"""The elevation API and CLI end to end: CLI → API over a socket → a worker on the dev
server → the mock IdP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.cli import app as cli
from stanch.config import ApiToken, Settings
from stanch.models import AuditType
from stanch.worker import build_worker
from tests.cli.server import serving
from tests.elevation.helpers import groups_of

pytestmark = pytest.mark.timeout(60)

PEOPLE = {  # principal → (roles, groups, identity keys)
    "alice": (["responder"], ["secops"], []),
    "carol": (["approver"], ["soc-approvers"], []),
    "eve": (["approver"], ["finance-leads"], []),
    "bob": (["viewer"], [], ["mock:u-bob"]),
}
TOKENS = {who: f"tok-elev-{who}-0123456789" for who in PEOPLE}


@dataclass
class Stack:
    url: str
    store: SqliteAuditStore

    async def stanch(self, who: str, *args: str) -> tuple[int, str]:
        env = {"STANCH_API_URL": self.url, "STANCH_TOKEN": TOKENS[who], "COLUMNS": "200",
               "NO_COLOR": "1"}
        # In a thread: the CLI's HTTP call is synchronous, the worker needs this loop.
        result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
        return result.exit_code, result.output

    async def api(self, who: str, method: str, path: str, body: object = None
                  ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=20) as http:
            return await http.request(method, path, json=body,
                                      headers={"Authorization": f"Bearer {TOKENS[who]}"})


@pytest_asyncio.fixture()
async def stack(dev_env: WorkflowEnvironment, esettings: Settings,
                task_queue: str) -> AsyncIterator[Stack]:
    esettings.temporal.task_queue = task_queue
    esettings.api_tokens = [ApiToken(sha256=hash_token(TOKENS[who]), principal=who, roles=r,
                                     groups=g, identity_keys=k)
                            for who, (r, g, k) in PEOPLE.items()]
    esettings.principals = {}
    esettings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(esettings.audit_sqlite_path)
    app = create_app(esettings, client=dev_env.client, audit=store)
    try:
        async with build_worker(dev_env.client, esettings, store, task_queue=task_queue):
            with serving(app) as url:
                yield Stack(url=url, store=store)
    finally:
        store.close()


async def test_request_approve_extend_revoke_through_cli_and_api(
        stack: Stack, mock_idp: str) -> None:
    code, out = await stack.stanch("alice", "elevate", "mock:u-bob", "--scope", "prod-db",
                                   "--for", "30m", "--reason", "INC-7 db failover",
                                   "--ticket", "INC-7")
    assert code == 0, out
    match = re.search(r"elevation-[0-9a-f]{24}", out)
    assert match, out
    wid = match.group(0)

    # Bob may ask for himself only; a viewer may not break glass.
    other = await stack.api("bob", "POST", "/v1/elevations", {
        "principal": "mock:u-alice", "scopes": ["prod-db"], "duration": "10m",
        "reason": "not mine"})
    assert other.status_code == 403
    bad = await stack.api("alice", "POST", "/v1/elevations", {
        "principal": "mock:u-bob", "scopes": ["prod-db"], "duration": "ten",
        "reason": "bad duration"})
    assert bad.status_code == 422

    for _ in range(100):
        if (await stack.api("alice", "GET", f"/v1/elevations/{wid}")).json().get("pending"):
            break
        await asyncio.sleep(0.1)
    code, out = await stack.stanch("eve", "elevation", "approve", wid)
    assert code == 1 and "403" in out and "not an approver" in out, out
    code, out = await stack.stanch("carol", "elevation", "approve", wid, "--comment", "ok")
    assert code == 0 and "approved" in out, out
    for _ in range(100):
        if "prod-db" in groups_of(mock_idp):
            break
        await asyncio.sleep(0.1)
    assert "prod-db" in groups_of(mock_idp)

    code, out = await stack.stanch("alice", "elevations")
    assert code == 0 and wid in out, out
    status = (await stack.api("bob", "GET", f"/v1/elevations/{wid}")).json()
    assert status["state"] == "active" and status["principal"] == "mock:u-bob"

    ext = await stack.api("alice", "POST", f"/v1/elevations/{wid}/extend",
                          {"duration": "15m", "reason": "still failing over"})
    assert ext.status_code == 200, ext.text
    refused = await stack.api("eve", "POST", f"/v1/elevations/{wid}/revoke",
                              {"reason": "not mine to end"})
    assert refused.status_code == 403, refused.text

    code, out = await stack.stanch("bob", "elevation", "revoke", wid, "--reason", "done")
    assert code == 0 and "revoked" in out and "prod-db" in out, out
    assert "prod-db" not in groups_of(mock_idp)

    for _ in range(100):  # the review follows the revoke
        types = {r.type for r in stack.store.query(workflow_id=wid, limit=200)}
        if AuditType.elevation_review in types:
            break
        await asyncio.sleep(0.1)
    assert {AuditType.elevation_requested, AuditType.decision_refused,
            AuditType.decision_recorded, AuditType.elevation_granted,
            AuditType.elevation_revoked, AuditType.elevation_review} <= types
