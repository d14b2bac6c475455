"""Push delivery across worker kills: real processes (Temporal, API, worker, mock IdP).

A relying party in the test has a push stream; containments run while the worker is
killed with SIGKILL and restarted. Every containment's SETs arrive, validate against
Stanch's JWKS, in the order of the actions, and no jti arrives twice.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from stanch.ssf import events
from stanch.ssf.jwks import RemoteJwks
from stanch.ssf.set import validate
from stanch.testing import serve_in_thread
from tests.resilience.stack import Stack, WebhookReceiver, contained

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]
IDENTS = [f"ssfk-{i:03d}" for i in range(6)]
RP_AUD = "https://rp.example"
ORDER = [events.TOKEN_CLAIMS_CHANGE, events.SESSION_REVOKED, events.ACCOUNT_DISABLED]


class RelyingParty:
    def __init__(self) -> None:
        self.got: list[str] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/events")
        async def receive(request: Request) -> Response:
            body = (await request.body()).decode()
            with self._lock:
                self.got.append(body)
            return Response(status_code=202)

        self.url, self.stop = serve_in_thread(app, name="rp")


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[Stack]:
    hooks = WebhookReceiver()
    inv = [{"provider": "mock", "id": i, "kind": "user", "display_name": i, "owner": "alice",
            "environment": "dev", "criticality": "low", "emails": [f"{i}@chaos.example"]}
           for i in IDENTS]
    s = Stack(tmp_path, inv, hooks.url)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        hooks.close()


def test_sets_survive_worker_kills_in_order_and_once(stack: Stack) -> None:
    rp = RelyingParty()
    try:
        admin = {"Authorization": f"Bearer {stack.admin_token}"}
        created = httpx.post(f"{stack.api}/v1/ssf/streams", headers=admin, timeout=30, json={
            "aud": RP_AUD, "events_requested": sorted(events.TRANSMITTED),
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": f"{rp.url}/events"}})
        assert created.status_code == 201, created.text
        stack.create_identities(IDENTS)
        rng = random.Random(16)
        wids = {}
        for n, ident in enumerate(IDENTS):
            wids[ident] = stack.post_alert(ident, f"ssf-kill-{ident}")["workflow_id"]
            if n % 2 == 1:  # kill while actions and deliveries are in flight
                time.sleep(rng.uniform(0.1, 1.0))
                stack.kill_worker()
                stack.start_worker(wait=False)
        stack.wait_for(wids.values(), contained, timeout=240)
        want = len(IDENTS) * len(ORDER)
        end = time.monotonic() + 180
        while len(rp.got) < want and time.monotonic() < end:
            time.sleep(0.5)
        claims = asyncio.run(_validate(stack.api, rp.got))
        jtis = Counter(c["jti"] for c in claims)
        assert [j for j, n in jtis.items() if n > 1] == []
        assert len(claims) == want
        by_txn: dict[str, list[str]] = {}
        for c in claims:
            by_txn.setdefault(c["txn"], []).append(next(iter(c["events"])))
        assert set(by_txn) == set(wids.values())
        assert all(types == ORDER for types in by_txn.values()), by_txn
        overview = httpx.get(f"{stack.api}/v1/ssf/overview", headers=admin, timeout=30).json()
        (stream,) = overview["transmitting"]
        assert stream["queue"] == {"delivered": want}
    finally:
        rp.stop()


async def _validate(api: str, tokens: list[str]) -> list[dict[str, Any]]:
    jwks = RemoteJwks(f"{api}/v1/ssf/jwks.json")
    return [await validate(t, key=jwks.key, issuer=api, audience=RP_AUD, now=time.time(),
                           max_age=3600, skew=60) for t in tokens]
