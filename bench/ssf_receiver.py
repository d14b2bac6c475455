"""A Shared Signals relying party for the bench: one push stream, every SET counted.

``make bench`` runs with an SSF stream configured (``--ssf on``, the default), so that every
containment also signs, queues and pushes a Security Event Token, as it would for an Okta or
Google relying party: the work near the hot path is measured, not assumed away. This
receiver runs in the bench client's process on a free loopback port, answers ``202`` to every
pushed SET (RFC 8935) and notes when each arrived and whom it names; the bench reports how
many came and how long after the IdP write they did. It checks no signature: that is
tests/ssf's job, not a benchmark's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from typing import Any

from aiohttp import web

from bench.http import Http
from stanch.runtime import free_port

PUSH = "urn:ietf:rfc:8935"
# What Stanch announces for the bench's reduce_scope steps, and the rest of the ladder.
EVENTS = [
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
]


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _subject_email(claims: dict[str, Any]) -> str | None:
    sub = claims.get("sub_id") or {}
    if sub.get("format") == "email":
        return str(sub.get("email"))
    for event in (claims.get("events") or {}).values():
        inner = event.get("subject") or {}
        if inner.get("format") == "email":
            return str(inner.get("email"))
    return None


class Receiver:
    """Counts pushed SETs; ``arrivals[email]`` is the wall time of the first one per subject."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secret = secrets.token_urlsafe(24)
        self.arrivals: dict[str, float] = {}
        self.received = 0
        self.refused = 0
        self.events: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def _push(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret}":
            self.refused += 1
            return web.json_response({"err": "authentication_failed"}, status=401)
        at = time.time()
        claims = _claims((await request.read()).decode())
        self.received += 1
        for uri in claims.get("events") or {}:
            self.events[uri.rsplit("/", 1)[-1]] = self.events.get(uri.rsplit("/", 1)[-1], 0) + 1
        email = _subject_email(claims)
        if email is not None:
            self.arrivals.setdefault(email, at)
        return web.Response(status=202)

    async def first(self, timeout: float) -> None:
        """Wait until a first SET has arrived (the transmitter is warm)."""
        deadline = time.monotonic() + timeout
        while not self.received:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no SET reached the bench's receiver in {timeout:.0f}s")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def subscribe(self, http: Http, api: str, token: str) -> str:
        """Create the push stream at Stanch's transmitter; returns its id."""
        r = await http.post(f"{api}/v1/ssf/streams", json={
            "delivery": {"method": PUSH, "endpoint_url": self.url,
                         "authorization_header": f"Bearer {self.secret}"},
            "events_requested": EVENTS, "description": "bench relying party"},
            headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 201:
            raise RuntimeError(f"could not create the bench's SSF stream: "
                               f"{r.status_code} {r.text[:300]}")
        return str(r.json()["stream_id"])
