"""Stanch's transmitter feeding Stanch's receiver: two stacks on free ports, one Temporal.

Stack A contains Bob; its emitter turns the applied actions into SETs; stack B, which
connected to A as a transmitter (discovery, issuer check, stream creation, verification),
receives them — pushed, or by polling — and each is an ordinary ``ssf`` alert in B.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, ProviderSettings, Settings
from stanch.models import AuditType
from stanch.ssf import events
from stanch.ssf.config import SsfTransmitterConfig
from stanch.ssf.delivery import Emitter
from stanch.testing import serve_in_thread
from stanch.worker import build_worker
from tests.ssf.conftest import _terminate_people, eventually

ADMIN_A, ADMIN_B, B_AT_A = "a-admin-0123456789", "b-admin-0123456789", "b-at-a-0123456789"
PUSH_B = "b-push-token-0123456789"
REPO = Path(__file__).resolve().parents[2]

B_INVENTORY = """
identities:
  - provider: mock
    id: u-bob-at-b
    kind: user
    display_name: Bob at B
    owner: bob
    emails: [bob@example.com]
"""


@dataclass
class Node:
    url: str
    settings: Settings
    audit: SqliteAuditStore

    async def call(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                      **kw)


@asynccontextmanager
async def node(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Node]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    audit = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=env.client, audit=audit)
    try:
        async with build_worker(env.client, settings, audit,
                                task_queue=settings.temporal.task_queue):
            url, stop = serve_in_thread(app, name="stanch")
            settings.api.public_url = url
            try:
                yield Node(url, settings, audit)
            finally:
                stop()
    finally:
        audit.close()


def _settings(tmp: Path, mock_idp: str, queue: str, inventory: Path) -> Settings:
    return Settings(state_dir=tmp / "state", playbooks_dir=REPO / "playbooks",
                    inventory_paths=[inventory],
                    providers={"mock": ProviderSettings(type="mock", options={"url": mock_idp})},
                    temporal={"task_queue": queue},  # type: ignore[arg-type]
                    _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("delivery", ["push", "poll"])
async def test_a_containment_in_one_is_an_alert_in_the_other(
        dev_env: WorkflowEnvironment, mock_idp: str, tmp_path: Path, delivery: str) -> None:
    await _terminate_people(dev_env)
    (tmp_path / "b-inv").mkdir()
    (tmp_path / "b-inv" / "b.yaml").write_text(B_INVENTORY)
    sa = _settings(tmp_path / "a", mock_idp, f"a-{delivery}-{id(tmp_path)}",
                   REPO / "inventory")
    sa.api_tokens = [ApiToken(sha256=hash_token(ADMIN_A), principal="ops-a", roles=["admin"]),
                     ApiToken(sha256=hash_token(B_AT_A), principal="stanch-b",
                              groups=["ssf.manage"])]
    sb = _settings(tmp_path / "b", mock_idp, f"b-{delivery}-{id(tmp_path)}", tmp_path / "b-inv")
    sb.api_tokens = [ApiToken(sha256=hash_token(ADMIN_B), principal="ops-b", roles=["admin"])]
    stop = asyncio.Event()
    async with node(dev_env, sa) as a:
        sb.ssf.transmitters = {"stanch-a": SsfTransmitterConfig(
            issuer=a.url, delivery=delivery,  # type: ignore[arg-type]
            access_token=SecretStr(B_AT_A), push_tokens=[SecretStr(PUSH_B)],
            events_requested=sorted(events.TRANSMITTED), poll_interval_seconds=0.2)}
        async with node(dev_env, sb) as b:
            emitter = asyncio.create_task(
                Emitter(sa, a.audit, dev_env.client).run(stop))
            try:
                connected = await b.call("POST", "/v1/ssf/transmitters/stanch-a/connect", ADMIN_B)
                assert connected.status_code == 200, connected.text
                stream = connected.json()
                assert stream["iss"] == a.url and stream["aud"] == "stanch-b"
                await b.call("POST", "/v1/ssf/transmitters/stanch-a/verify", ADMIN_B)

                def verified() -> bool:
                    rows = [r for r in b.audit.query(types=[AuditType.ssf_event], limit=100)
                            if r.reason == "stream verified"]
                    return bool(rows)
                await eventually(verified, timeout=60)

                resp = await a.call("POST", "/v1/containments", ADMIN_A, json={
                    "identity": "bob@example.com", "level": "force_reauth",
                    "reason": "two stacks", "break_glass": True})
                assert resp.status_code in (200, 202), resp.text

                def received() -> list[Any]:
                    return [r for r in b.audit.query(types=[AuditType.alert_received],
                                                     limit=100) if r.data["source"] == "ssf"]
                got = await eventually(lambda: len(received()) >= 2 and received(),
                                       timeout=90)
                titles = [r.reason for r in got]
                assert any("token-claims-change" in (t or "") for t in titles)
                assert any("session-revoked" in (t or "") for t in titles)
                plans = b.audit.query(types=[AuditType.plan_chosen], limit=100)
                assert {p.subject for p in plans} == {"mock:u-bob-at-b"}
                refused = b.audit.query(types=[AuditType.alert_refused], limit=100)
                assert refused == []
            finally:
                stop.set()
                await emitter
    await _terminate_people(dev_env)
