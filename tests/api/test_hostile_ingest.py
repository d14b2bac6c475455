"""Webhooks and bodies as an attacker sends them, over real sockets to two API instances.

Two apps share one state directory (one audit database), as two API processes behind a
load balancer do; a real worker runs on the Temporal dev server.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings, SourceAuth
from stanch.ingest.signing import sign
from stanch.models import AuditType, containment_workflow_id
from stanch.worker import build_worker
from tests.api.test_hostile_subject import PEOPLE, TOKENS, _terminate
from tests.cli.server import serving

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
WHSEC = "whsec_" + "aG9zdGlsZS10ZXN0LXNlY3JldC1rZXktMzJieXRlcyE="
SOURCES = {
    "generic": SourceAuth(mode="bearer", secrets=[SecretStr("gen-token-0123456789")]),
    "datadog": SourceAuth(mode="standard_webhooks", secrets=[SecretStr(WHSEC)]),
    "github": SourceAuth(mode="github", secrets=[SecretStr("gh-hook-secret")]),
    "ocsf": SourceAuth(mode="hmac", secrets=[SecretStr("ocsf-key")],
                       signature_header="X-Custom-Auth-Sig"),
}
DEPLOY_WID = containment_workflow_id("mock", "sa-deploy")
ALICE_WID = containment_workflow_id("mock", "u-alice")


@dataclass
class Apis:
    urls: list[str]
    apps: list[FastAPI]
    store: SqliteAuditStore
    env: WorkflowEnvironment

    async def post(self, i: int, source: str, body: bytes, *, msg_id: str | None = None,
                   extra: dict[str, str] | None = None) -> httpx.Response:
        conf = SOURCES[source]
        req = sign(conf.mode, body, secret=conf.secrets[0].get_secret_value(),
                   now=_now(), msg_id=msg_id, signature_header=conf.signature_header)
        headers = {**req.headers, **(extra or {})}
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.urls[i]}/v1/alerts/{source}", content=body,
                                   headers=headers, params=req.query)

    async def closed(self, wid: str) -> bool:
        desc = await self.env.client.get_workflow_handle(wid).describe()
        return desc.status is not WorkflowExecutionStatus.RUNNING

    async def runs(self, wid: str) -> int:
        n = 0
        async for _ in self.env.client.list_workflows(f'WorkflowId = "{wid}"'):
            n += 1
        return n


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest_asyncio.fixture()
async def apis(dev_env: WorkflowEnvironment, settings: Settings,
               task_queue: str) -> AsyncIterator[Apis]:
    for wid in (DEPLOY_WID, ALICE_WID):
        await _terminate(dev_env, wid)
    settings.temporal.task_queue = task_queue
    settings.sources = dict(SOURCES)
    settings.api.body_timeout_seconds = 1.0
    settings.notify.slack_signing_secret = SecretStr("slack-signing-secret")
    settings.api_tokens = [ApiToken(sha256=hash_token(TOKENS[who]), principal=who, roles=r,
                                    groups=g, identity_keys=k)
                           for who, (r, g, k) in PEOPLE.items()]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    apps = [create_app(settings, client=dev_env.client) for _ in range(2)]
    try:
        async with build_worker(dev_env.client, settings, store, task_queue=task_queue):
            with ExitStack() as servers:
                urls = [servers.enter_context(serving(app)) for app in apps]
                yield Apis(urls, apps, store, dev_env)
            for wid in (DEPLOY_WID, ALICE_WID):
                await _terminate(dev_env, wid)
    finally:
        store.close()


# ---------------------------------------------------------------------- bodies


def _raw(url: str, head: bytes, chunks: Iterator[bytes] = iter(())) -> tuple[bytes, int]:
    """Send a request by hand; return (what the server answered, body bytes sent)."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as s:
        s.sendall(head)
        s.setblocking(False)
        answer = b""
        for chunk in chunks:
            try:
                answer += s.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                s.setblocking(True)
                s.sendall(chunk)
                sent += len(chunk)
            except OSError:
                break
            finally:
                s.setblocking(False)
        s.setblocking(True)
        s.settimeout(20)
        try:
            while not answer.endswith(b"}"):
                more = s.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
    return answer, sent


async def test_huge_anonymous_bodies_are_refused_before_they_are_read(apis: Apis) -> None:
    url = apis.urls[0]
    # Declared: refused from the header alone, whatever the endpoint, before auth.
    for path in ("/v1/containments", "/v1/alerts/generic", "/v1/audit",
                 "/v1/integrations/slack/interactions", "/v1/no-such-thing"):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: 200000000\r\n\r\n").encode()
        answer, _ = await asyncio.to_thread(_raw, url, head)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
        assert b"api.max_body_bytes" in answer
        assert b"content-type: application/problem+json" in answer.lower(), answer[:300]
        assert b'"code":"too_large"' in answer, answer[:400]

    # Streamed without a length: cut off once past the limit, 200 MB never held.
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunk = b"x" * 65536
    framed = (b"%x\r\n" % len(chunk)) + chunk + b"\r\n"
    head = (b"POST /v1/containments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body = (framed for _ in range(200_000_000 // len(chunk)))
    answer, sent = await asyncio.to_thread(_raw, url, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 50_000_000, f"the server kept reading: {sent} bytes"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 60_000, f"peak RSS grew by {grown_kib} KiB"


async def test_a_body_that_never_arrives_is_answered_408(apis: Apis) -> None:
    head = (b"POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer gen-token-0123456789\r\nContent-Length: 50000\r\n\r\n"
            b'{"id": "slow"')
    # … then silence (body_timeout_seconds = 1)
    answer, _ = await asyncio.to_thread(_raw, apis.urls[0], head)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"api.body_timeout_seconds" in answer
    assert b'"code":"request_timeout"' in answer, answer[:400]


async def test_slack_refuses_an_unsigned_body_before_reading_it(apis: Apis) -> None:
    head = (b"POST /v1/integrations/slack/interactions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 900000\r\n"
            b"\r\npayload=")
    # No signature headers, the body mostly unsent.
    answer, _ = await asyncio.to_thread(_raw, apis.urls[0], head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"missing Slack signature headers" in answer


# ---------------------------------------------------------------------- payloads


async def test_huge_numbers_and_deep_nesting_are_422_with_a_dead_letter(apis: Apis) -> None:
    huge = "1" + "0" * 400
    generic = [
        f'{{"id": "h1", "title": "t", "severity": {huge}, "identities": []}}',
        f'{{"id": "h2", "title": "t", "observed_at": {huge}, "identities": []}}',
        f'{{"id": "h3", "title": "t", "observed_at": -{huge}.5e300, "identities": []}}',
    ]
    ocsf = json.loads((FIXTURES / "ocsf" / "anomalous-key-use.json").read_text())
    ocsf_text = json.dumps({**ocsf, "class_uid": 0}).replace('"class_uid": 0',
                                                             f'"class_uid": {huge}')
    cases = [("generic", g.encode()) for g in generic] + [("ocsf", ocsf_text.encode())]
    for depth in (500, 990, 5000):
        cases.append(("generic", ("[" * depth + "]" * depth).encode()))
        cases.append(("generic", ('{"a":' * depth + "1" + "}" * depth).encode()))
    dead = apis.apps[0].state.dead_letters
    for source, body in cases:
        before = len(dead.list(10_000))
        r = await apis.post(0, source, body)
        assert r.status_code == 422, (source, body[:80], r.status_code, r.text[:300])
        assert r.json()["detail"], r.text
        assert len(dead.list(10_000)) == before + 1, (source, body[:80])
    long = json.dumps({"id": "x" * 500_000, "title": "y" * 400_000}).encode()
    assert (await apis.post(0, "generic", long)).status_code < 500
    kept = dead.list(1)[0]
    # Custom auth headers are masked in dead letters (the configured signature header).
    ocsf_letter = next(d for d in dead.list(100) if d.source == "ocsf")
    assert ocsf_letter.headers.get("x-custom-auth-sig") == "[REDACTED]"
    assert kept.reason


# ---------------------------------------------------------------------- delivery memory


def _generic_alert(alert_id: str, who: str = "alice@example.com") -> bytes:
    return json.dumps({"id": alert_id, "title": "Impossible travel", "severity": "high",
                       "confidence": "high", "category": "risky_sign_in",
                       "identities": [{"name": who, "type": "upn"}]}).encode()


async def _wait(pred: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_a_resolved_false_positive_does_not_come_back(apis: Apis) -> None:
    body = _generic_alert(f"fp-{uuid.uuid4().hex}")
    first = await apis.post(0, "generic", body)
    assert first.status_code == 202 and first.json()["deduplicated"] is False, first.text
    wid = first.json()["workflow_id"]
    assert wid == ALICE_WID
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{apis.urls[0]}/v1/containments/{wid}/resolve",
                            json={"verdict": "false_positive", "reason": "travel was real"},
                            headers={"Authorization": f"Bearer {TOKENS['admin']}"})
    assert r.status_code == 200, r.text
    await _wait(lambda: apis.closed(wid))
    runs = await apis.runs(wid)
    for i in (0, 1):  # the same delivery again, to either API
        again = await apis.post(i, "generic", body)
        assert again.status_code == 202, again.text
        assert again.json()["deduplicated"] is True, again.text
        assert again.json()["workflow_id"] == wid
    assert await apis.closed(wid)
    assert await apis.runs(wid) == runs  # nothing started
    # Received once in the chain: a repeat's record (appended beside the recall) is the
    # first one, by its dedup key.
    alert_id = first.json()["alert_id"]
    received = [r for r in apis.store.query(types=[AuditType.alert_received], limit=10_000)
                if alert_id in r.alert_ids]
    assert len(received) == 1


async def test_webhook_and_github_deliveries_are_remembered_by_every_api(apis: Apis) -> None:
    # Standard Webhooks: the same signed id, replayed to the *other* API.
    dd = json.loads((FIXTURES / "datadog" / "compromised-access-key.json").read_text())
    dd["SECURITY_SIGNAL_ID"] = f"sig-{uuid.uuid4().hex}"
    sw_body = json.dumps(dd).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = await apis.post(0, "datadog", sw_body, msg_id=msg_id)
    assert first.status_code == 202 and first.json()["deduplicated"] is False, first.text
    assert first.json()["workflow_id"] == DEPLOY_WID
    again = await apis.post(1, "datadog", sw_body, msg_id=msg_id)
    assert again.status_code == 202 and again.json()["deduplicated"] is True, again.text

    # GitHub: the same X-GitHub-Delivery to the other API; then a new delivery id for the
    # same alert (GitHub's redelivery, or a replay with the header changed).
    gh = (FIXTURES / "github" / "aws-key-created.json").read_bytes()
    delivery = str(uuid.uuid4())
    first = await apis.post(0, "github", gh, extra={"X-GitHub-Delivery": delivery,
                                              "X-GitHub-Event": "secret_scanning_alert"})
    assert first.status_code == 202, first.text
    assert first.json()["workflow_id"] == DEPLOY_WID
    runs = await apis.runs(DEPLOY_WID)
    for extra in ({"X-GitHub-Delivery": delivery}, {"X-GitHub-Delivery": str(uuid.uuid4())}):
        again = await apis.post(1, "github", gh, extra={**extra,
                                                  "X-GitHub-Event": "secret_scanning_alert"})
        assert again.status_code == 202, again.text
        assert again.json()["deduplicated"] is True, again.text
    assert await apis.runs(DEPLOY_WID) == runs


# ---------------------------------------------------------------------- refused webhooks


async def test_refused_webhooks_are_counted_and_audited_only_in_aggregate(apis: Apis,
                                                                     settings: Settings) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(40):
            r = await http.post(
                f"{apis.urls[i % 2]}/v1/alerts/source-of-truth%20approved%20by%20ceo",
                content=b"{}")
            assert r.status_code == 404
            r = await http.post(f"{apis.urls[i % 2]}/v1/alerts/generic", content=b"{}",
                                headers={"Authorization": "Bearer guessed"})
            assert r.status_code == 401
        metrics = (await http.get(f"{apis.urls[0]}/metrics",
                                  headers={"Authorization": f"Bearer {TOKENS['watcher']}"})).text
    assert 'stanch_alerts_refused_total{reason="unknown_source",source="unknown"}' in metrics
    # Never one record per request (a minute boundary may already have flushed some).
    assert len(apis.store.query(types=["alert.refused"], limit=1000)) <= 8
    records = await asyncio.to_thread(_after_shutdown, apis)
    assert records, "no aggregate records"
    assert all(r.actor == "stanch" for r in records)
    by = {(r.data["source"], r.data["code"]): 0 for r in records}
    for r in records:
        by[(r.data["source"], r.data["code"])] += r.data["count"]
    assert by == {("unknown", "unknown_source"): 40, ("generic", "bad_token"): 40}
    assert len(records) <= 2 * 2 * 2  # per API, per source and reason, per minute
    assert not any("ceo" in json.dumps(r.model_dump(mode="json")) for r in records)


def _after_shutdown(apis: Apis) -> list[Any]:
    """Flush the tallies the way a stopping API does (its lifespan), then read the chain."""
    import threading

    done: list[int] = []

    def flush(app: FastAPI) -> None:
        done.append(asyncio.run(app.state.refused_webhooks.flush()))

    threads = [threading.Thread(target=flush, args=(app,)) for app in apis.apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return apis.store.query(types=["alert.refused"], limit=1000)
