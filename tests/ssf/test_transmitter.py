"""Stanch as transmitter, with a receiver running in the test: metadata, JWKS, streams,
status, verification, poll, and a containment whose SETs arrive in order, validate, and
are not delivered again after the worker and emitter restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from typer.testing import CliRunner

from stanch.cli import app
from stanch.models import AuditType
from stanch.ssf import events
from stanch.ssf.delivery import Emitter
from stanch.ssf.jwks import RemoteJwks
from stanch.ssf.keys import KeyStore
from stanch.ssf.set import validate
from stanch.testing import serve_in_thread
from stanch.worker import build_worker
from tests.ssf.conftest import ADMIN, RECEIVER, Stack, eventually

RP_AUD = "https://rp.example"


class Receiver:
    """A relying party: records every push, answers 202."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.auth: list[str | None] = []
        app = FastAPI()

        @app.post("/events")
        async def events_(request: Request) -> Response:
            assert request.headers["content-type"] == "application/secevent+jwt"
            self.auth.append(request.headers.get("authorization"))
            self.got.append((await request.body()).decode())
            return Response(status_code=202)

        self.app = app


async def _claims(stack: Stack, token: str) -> dict[str, Any]:
    jwks = RemoteJwks(f"{stack.url}/v1/ssf/jwks.json")
    return await validate(token, key=jwks.key, issuer=stack.url, audience=RP_AUD,
                          now=time.time(), max_age=600, skew=60)


async def test_metadata_jwks_and_stream_crud(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        meta = (await http.get(f"{stack.url}/.well-known/ssf-configuration")).json()
        jwks = (await http.get(meta["jwks_uri"])).json()
    assert meta["spec_version"] == "1_0" and meta["issuer"] == stack.url
    assert meta["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
    assert {"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"} <= set(meta["delivery_methods_supported"])
    assert meta["configuration_endpoint"].endswith("/v1/ssf/streams")
    assert meta["add_subject_endpoint"].endswith("/v1/ssf/subjects:add")
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key
    assert len(__import__("base64").urlsafe_b64decode(key["n"] + "==")) * 8 >= 2048
    # rotation keeps the old key published
    KeyStore(stack.settings.state_dir / "ssf" / "keys").rotate()
    async with httpx.AsyncClient(timeout=30) as http:
        kids = {k["kid"] for k in (await http.get(meta["jwks_uri"])).json()["keys"]}
    assert key["kid"] in kids and len(kids) == 2

    assert (await stack.api("POST", "/v1/ssf/streams", token="nope", json={})).status_code \
        == 401
    assert (await stack.api("GET", "/v1/ssf/streams", token="x")).status_code == 401
    body = {"events_requested": [events.SESSION_REVOKED, events.CREDENTIAL_COMPROMISE],
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "http://rp/x",
                         "authorization_header": "Bearer rp-secret"}, "aud": RP_AUD}
    created = await stack.api("POST", "/v1/ssf/streams", token=RECEIVER, json=body)
    assert created.status_code == 201, created.text
    s = created.json()
    assert s["iss"] == stack.url and s["events_delivered"] == [events.SESSION_REVOKED]
    assert "authorization_header" not in s["delivery"]
    sid = s["stream_id"]
    assert (await stack.api("GET", f"/v1/ssf/streams?stream_id={sid}", token=RECEIVER)
            ).json()["stream_id"] == sid
    patched = await stack.api("PATCH", "/v1/ssf/streams", token=RECEIVER, json={
        "stream_id": sid, "description": "rp one"})
    assert patched.json()["description"] == "rp one"
    assert patched.json()["events_requested"] == body["events_requested"]
    bad = await stack.api("PATCH", "/v1/ssf/streams", token=RECEIVER, json={
        "stream_id": sid, "iss": "https://other"})
    assert bad.status_code == 400
    assert (await stack.api("GET", f"/v1/ssf/status?stream_id={sid}", token=RECEIVER)
            ).json()["status"] == "enabled"
    paused = await stack.api("POST", "/v1/ssf/status", token=RECEIVER, json={
        "stream_id": sid, "status": "paused", "reason": "maintenance"})
    assert paused.json() == {"stream_id": sid, "status": "paused", "reason": "maintenance"}
    assert (await stack.api("POST", "/v1/ssf/status", token=RECEIVER, json={
        "stream_id": sid, "status": "sleepy"})).status_code == 400
    removed = await stack.api("POST", "/v1/ssf/subjects:remove", token=RECEIVER, json={
        "stream_id": sid, "subject": {"format": "email", "email": "bob@example.com"}})
    assert removed.status_code == 200, removed.text
    bad = await stack.api("POST", "/v1/ssf/subjects:add", token=RECEIVER, json={
        "stream_id": sid, "subject": {"format": "email"}})
    assert bad.status_code == 400 and "email" in bad.json()["detail"]
    assert (await stack.api("DELETE", f"/v1/ssf/streams?stream_id={sid}", token=RECEIVER)
            ).status_code == 204
    assert (await stack.api("GET", f"/v1/ssf/streams?stream_id={sid}", token=RECEIVER)
            ).status_code == 404
    assert len(stack.records(AuditType.ssf_stream)) == 5
    # the operator's view: `stanch ssf streams` through the API
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["ssf", "streams", "--api", stack.url],
                                     env={"STANCH_TOKEN": ADMIN})
    assert result.exit_code == 0, result.output
    assert f"issuer {stack.url}" in result.output


async def test_poll_stream_verification_and_ack(stack: Stack) -> None:
    s = (await stack.api("POST", "/v1/ssf/streams", token=RECEIVER, json={
        "aud": RP_AUD, "events_requested": [events.SESSION_REVOKED]})).json()
    sid = s["stream_id"]
    assert s["delivery"]["method"] == "urn:ietf:rfc:8936"
    assert (await stack.api("POST", "/v1/ssf/verify", token=RECEIVER, json={
        "stream_id": sid, "state": "xyz"})).status_code == 204
    poll = s["delivery"]["endpoint_url"].removeprefix(stack.url)
    got = (await stack.api("POST", poll, token=RECEIVER, json={"maxEvents": 10})).json()
    ((jti, token),) = got["sets"].items()
    claims = await _claims(stack, token)
    assert claims["events"] == {events.VERIFICATION: {"state": "xyz"}}
    assert claims["sub_id"] == {"format": "opaque", "id": sid}
    again = (await stack.api("POST", poll, token=RECEIVER, json={"ack": [jti]})).json()
    assert again == {"sets": {}, "moreAvailable": False}
    # another receiver cannot see or poll this stream
    assert (await stack.api("POST", poll, token="x", json={})).status_code == 401
    # the stack's transmitter allows one verification an hour (min_verification_interval)
    assert s["min_verification_interval"] == 3600
    too_soon = await stack.api("POST", "/v1/ssf/verify", token=RECEIVER, json={
        "stream_id": sid, "state": "again"})
    assert too_soon.status_code == 429 and too_soon.headers["retry-after"] == "3600"


async def test_containment_events_arrive_in_order_once(stack: Stack) -> None:
    rp = Receiver()
    rp_url, stop_rp = serve_in_thread(rp.app, name="rp")
    emitter_stop = asyncio.Event()
    try:
        s = (await stack.api("POST", "/v1/ssf/streams", token=RECEIVER, json={
            "aud": RP_AUD, "events_requested": sorted(events.TRANSMITTED),
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": f"{rp_url}/events",
                         "authorization_header": "Bearer rp-secret"}})).json()
        emitter = Emitter(stack.settings, stack.audit, stack.env.client)
        task = asyncio.create_task(emitter.run(emitter_stop))
        resp = await stack.api("POST", "/v1/containments", token=ADMIN, json={
            "identity": "bob@example.com", "level": "revoke",
            "reason": "ssf transmitter test", "break_glass": True})
        assert resp.status_code in (200, 202), resp.text
        wid = resp.json()["workflow_id"]
        # reduce_scope and force_reauth run at once; rotate waits for an approver
        await eventually(lambda: len(rp.got) >= 2, timeout=60)
        # a rollback undoes reduce_scope: the receiver hears the claims changed back
        rolled = await stack.api("POST", f"/v1/containments/{wid}/rollback", token=ADMIN,
                                 json={"reason": "false positive"})
        assert rolled.status_code == 200, rolled.text
        await eventually(lambda: len(rp.got) >= 3, timeout=60)
        emitter_stop.set()
        await task
        claims = [await _claims(stack, t) for t in rp.got]
        types = [next(iter(c["events"])) for c in claims]
        assert types == [events.TOKEN_CLAIMS_CHANGE, events.SESSION_REVOKED,
                         events.TOKEN_CLAIMS_CHANGE]
        assert "undo of reduce_scope" in \
            claims[2]["events"][events.TOKEN_CLAIMS_CHANGE]["reason_admin"]["en"]
        assert all(c["sub_id"] == {"format": "email", "email": "bob@example.com"}
                   for c in claims)
        assert len({c["txn"] for c in claims}) == 1
        assert all(a == "Bearer rp-secret" for a in rp.auth)
        revoked = next(c for c in claims if events.SESSION_REVOKED in c["events"])
        assert revoked["events"][events.SESSION_REVOKED]["reason_admin"]["en"]
        # a fresh emitter (a restarted worker) announces nothing again
        seen = len(rp.got)
        fresh = Emitter(stack.settings, stack.audit, stack.env.client)
        await fresh.once()  # re-reads the audit trail from its persisted cursor
        assert fresh.store.pending(s["stream_id"]) == []
        await asyncio.sleep(1)  # give a wrongly re-kicked delivery a chance to show
        assert len(rp.got) == seen
        counts = fresh.store.counts(s["stream_id"])
        assert counts.get("pending", 0) == 0 and counts.get("delivered") == seen
        assert len({c["jti"] for c in claims}) == len(claims)
    finally:
        emitter_stop.set()
        stop_rp()


__all__ = ["build_worker"]
