"""A Stanch stack (API on a free port, worker on the session's Temporal dev server) and a
fake transmitter beside it, for the SSF receiver and transmitter tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from pydantic import SecretStr
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings
from stanch.models import AuditRecord, AuditType, containment_workflow_id
from stanch.ssf.config import SsfTransmitterConfig
from stanch.testing import serve_in_thread
from stanch.worker import build_worker
from tests.ssf.fake_transmitter import CLIENT_ID, CLIENT_SECRET, FakeTransmitter

AUD = "https://stanch.test/receiver"
PUSH_TOKEN = "push-secret-0123456789"
ADMIN, RECEIVER = "admin-token-0123456789", "receiver-token-0123456789"


@dataclass
class Stack:
    url: str
    settings: Settings
    audit: SqliteAuditStore
    fake: FakeTransmitter
    env: WorkflowEnvironment

    def records(self, type_: AuditType) -> list[AuditRecord]:
        return self.audit.query(types=[type_], limit=1000)

    async def api(self, method: str, path: str, token: str = ADMIN, **kw: Any
                  ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.request(method, path, headers={
                "Authorization": f"Bearer {token}"}, **kw)

    async def push(self, token: str, name: str = "okta", auth: str | None = PUSH_TOKEN,
                   ctype: str = "application/secevent+jwt") -> httpx.Response:
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = f"Bearer {auth}"
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.url}/v1/ssf/push/{name}", content=token,
                                   headers=headers)


async def _terminate_people(env: WorkflowEnvironment) -> None:
    """Containments are per identity on the session's server: the next test's queue must
    not find Alice's or Bob's workflow waiting on this test's queue."""
    for ident in ("u-alice", "u-bob", "u-bob-at-b"):
        try:
            await env.client.get_workflow_handle(
                containment_workflow_id("mock", ident)).terminate(reason="test isolation")
        except RPCError:
            pass


@pytest_asyncio.fixture()
async def stack(dev_env: WorkflowEnvironment, settings: Settings, task_queue: str
                ) -> AsyncIterator[Stack]:
    fake = FakeTransmitter()
    fake.url, stop_fake = serve_in_thread(fake.app, name="fake-transmitter")
    settings.temporal.task_queue = task_queue
    settings.api_tokens = [
        ApiToken(sha256=hash_token(ADMIN), principal="ops", roles=["admin"]),
        ApiToken(sha256=hash_token(RECEIVER), principal="rp-1", groups=["ssf.manage"]),
    ]
    settings.ssf.transmitters = {"okta": SsfTransmitterConfig(
        issuer=fake.url, token_url=f"{fake.url}/token", client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET), push_tokens=[SecretStr(PUSH_TOKEN)],
        audience=AUD),
        # a transmitter whose metadata cannot be reached (nothing listens on port 9)
        "down": SsfTransmitterConfig(issuer="http://127.0.0.1:9", audience=AUD)}
    settings.ssf.min_verification_interval_seconds = 3600
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    audit = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client, audit=audit)
    await _terminate_people(dev_env)
    try:
        async with build_worker(dev_env.client, settings, audit, task_queue=task_queue):
            url, stop_api = serve_in_thread(app, name="stanch-api")
            settings.api.public_url = url
            try:
                yield Stack(url, settings, audit, fake, dev_env)
            finally:
                stop_api()
                await _terminate_people(dev_env)
    finally:
        stop_fake()
        audit.close()


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (a deadline, not a timed claim)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)
