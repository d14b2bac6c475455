"""Shared Signals routes: the receiver's push endpoint and Stanch's transmitter endpoints.

Receiver: ``POST /v1/ssf/push/{name}`` (RFC 8935) answers 202, or 400 with
``{"err", "description"}``; accepted CAEP/RISC events go down the ordinary alert path
(audit ``alert.received``, inventory, update-with-start). Poll streams are drained by a
:class:`~stanch.ssf.manage.Poller` per configured transmitter, started with the app.

Transmitter: metadata, JWKS, stream configuration, status, verification and poll, with
bearer auth: group ``ssf.manage`` (or the admin role) may configure streams, ``ssf.read``
(or ``ssf.manage``) may read them; a receiver sees only the streams it created.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api.auth import AuthFailure, has_role, require
from stanch.ingest import IngestError, PayloadTooLarge
from stanch.logging import get_logger
from stanch.models import Principal, Role
from stanch.ssf import manage
from stanch.ssf.client import POLL, PUSH, SsfClientError
from stanch.ssf.delivery import issuer_of, kick, open_transmitter
from stanch.ssf.metrics import SSF_RECEIVED
from stanch.ssf.receiver import Receiver
from stanch.ssf.set import SetError, Unavailable
from stanch.ssf.store import ACKED, PENDING, SsfStore, Stream
from stanch.ssf.transmitter import STATUSES, StreamError, Transmitter

log = get_logger("stanch.api.ssf")
MANAGE, READ = "ssf.manage", "ssf.read"


@dataclass
class SsfRuntime:
    store: SsfStore
    receiver: Receiver
    transmitter: Transmitter


def runtime(app: Any) -> SsfRuntime:
    rt: SsfRuntime | None = getattr(app.state, "ssf", None)
    if rt is None:
        settings = app.state.settings
        store = SsfStore(settings.state_dir / "ssf.db")
        issuer = issuer_of(settings)
        rt = SsfRuntime(store, Receiver(settings.ssf, store, app.state.audit, issuer),
                        open_transmitter(settings, store, app.state.inventory))
        app.state.ssf = rt
    return rt


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = []
    settings = app.state.settings
    polled = [n for n, c in settings.ssf.transmitters.items() if c.delivery == "poll"]
    if settings.ssf.enabled and polled:
        rt = runtime(app)
        for name in polled:
            poller = manage.Poller(rt.receiver, name, _handler(app))
            tasks.append(asyncio.create_task(poller.run(stop)))
    yield
    stop.set()
    for task in tasks:  # a poll round in flight is safe to drop: nothing was acked yet
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    current: SsfRuntime | None = getattr(app.state, "ssf", None)
    if current is not None:
        current.store.close()


router = APIRouter(tags=["ssf"], lifespan=lifespan)


# --------------------------------------------------------------------------- receiver


def _handler(app: Any) -> manage.Handler:
    async def handle(name: str, token: str, via: str) -> None:
        await _accept(SimpleNamespace(app=app), name, token, via, client=None)
    return handle


async def _accept(request: Any, name: str, token: str, via: str, client: str | None) -> None:
    """Validate one SET and apply it; raises SetError (refused, audited) or the dispatch
    error (nothing remembered: a redelivery tries again)."""
    from stanch.api.routes_alerts import _contain

    rt = runtime(request.app)
    try:
        outcome = await rt.receiver.accept(name, token, via=via)
    except SetError as e:
        SSF_RECEIVED.labels(e.err).inc()
        await rt.receiver.refused(name, e, via, client)
        raise
    if outcome.kind == "alert" and not outcome.duplicate:
        for alert in outcome.alerts:
            await _contain(request, alert)
    await rt.receiver.done(name, outcome)
    SSF_RECEIVED.labels("duplicate" if outcome.duplicate else outcome.kind).inc()


def _err(status: int, err: str, description: str) -> JSONResponse:
    return JSONResponse({"err": err, "description": description}, status_code=status)


@router.post("/v1/ssf/push/{name}", status_code=202)
async def push(name: str, request: Request) -> Response:
    from stanch.api.routes_alerts import _read_body

    rt = runtime(request.app)
    client = request.client.host if request.client else None
    cfg = request.app.state.settings.ssf.transmitters.get(name)
    if cfg is None:
        refusal = SetError("invalid_request", f"no transmitter {name[:64]!r} is configured")
        await rt.receiver.refused(name, refusal, "push", client)
        return _err(400, refusal.err, refusal.description)
    if cfg.push_tokens and not _token_ok(request.headers.get("authorization"), cfg.push_tokens):
        refusal = SetError("authentication_failed", "missing or unknown bearer token")
        await rt.receiver.refused(name, refusal, "push", client)
        return _err(401, refusal.err, refusal.description)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        body = await _read_body(request, request.app.state.settings.api.max_body_bytes)
    except PayloadTooLarge as e:
        return _err(413, "invalid_request", e.reason)
    if ctype != "application/secevent+jwt":
        refusal = SetError("invalid_request", "Content-Type must be application/secevent+jwt")
        await rt.receiver.refused(name, refusal, "push", client)
        return _err(400, refusal.err, refusal.description)
    try:
        await _accept(request, name, body.decode("ascii", "replace").strip(), "push", client)
    except SetError as e:
        return _err(400, e.err, e.description)
    except Unavailable as e:
        log.warning("ssf.unavailable", transmitter=name, reason=str(e)[:300])
        return JSONResponse({"err": "temporarily_unavailable",
                             "description": "the transmitter's keys could not be loaded; "
                                            "retry"}, status_code=503,
                            headers={"Retry-After": "30"})
    except (RPCError, WorkflowUpdateFailedError, RPCTimeoutOrCancelledError, OSError,
            RuntimeError, IngestError) as e:
        log.warning("ssf.dispatch_failed", transmitter=name, error=type(e).__name__)
        return JSONResponse({"err": "temporarily_unavailable",
                             "description": "received but not yet applied; retry"},
                            status_code=503, headers={"Retry-After": "5"})
    return Response(status_code=202)


def _token_ok(header: str | None, tokens: list[Any]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(token.strip().encode(), t.get_secret_value().encode())
    return ok


# --------------------------------------------------------------------------- transmitter


async def _principal(request: Request, scope: str) -> Principal:
    try:
        principal = await request.app.state.authenticator.authenticate(
            request.headers.get("authorization"))
    except AuthFailure as e:
        raise _Refused(e.status, "invalid_token", e.reason) from None
    groups = set(principal.groups)
    allowed = MANAGE in groups or has_role(principal, Role.admin) or \
        (scope == READ and READ in groups)
    if not allowed:
        raise _Refused(403, "insufficient_scope", f"principal {principal.id!r} lacks the "
                       f"{scope!r} scope (the group {scope}, or the admin role)")
    return principal


class _Refused(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": f'Bearer error="{self.error}"'} \
            if self.status in (401, 403) else None
        return JSONResponse({"error": self.error, "reason": self.reason},
                            status_code=self.status, headers=headers)


def _own(rt: SsfRuntime, principal: Principal, stream_id: Any) -> Stream:
    stream = rt.store.stream(stream_id) if isinstance(stream_id, str) else None
    if stream is None or (stream.owner != principal.id and not has_role(principal, Role.admin)):
        raise _Refused(404, "not_found", "no such stream")
    return stream


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _Refused(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_request", "the body must be a JSON object")
    return body


@router.get("/.well-known/ssf-configuration")
@router.get("/.well-known/ssf-configuration/{path:path}")
async def metadata(request: Request, path: str = "") -> JSONResponse:
    rt = runtime(request.app)
    if request.url.path.rstrip("/") != rt.transmitter.well_known_path().rstrip("/"):
        return JSONResponse({"error": "not_found", "reason": "no such issuer"}, 404)
    return JSONResponse(rt.transmitter.metadata())


@router.get("/v1/ssf/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    rt = runtime(request.app)
    return JSONResponse(await asyncio.to_thread(rt.transmitter.keys.jwks),
                        headers={"Cache-Control": "max-age=300"})


async def _guard(request: Request, scope: str, fn: Any) -> Response:
    try:
        principal = await _principal(request, scope)
        return await fn(runtime(request.app), principal)  # type: ignore[no-any-return]
    except _Refused as e:
        return e.response()
    except StreamError as e:
        return JSONResponse({"error": "invalid_request", "reason": e.reason}, e.status)


@router.post("/v1/ssf/streams", status_code=201)
async def create_stream(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        stream = await asyncio.to_thread(rt.transmitter.create, p.id, body)
        await _audit_stream(request, p, "stream created", stream)
        return JSONResponse(stream, status_code=201)
    return await _guard(request, MANAGE, go)


@router.get("/v1/ssf/streams")
async def read_streams(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        if stream_id is not None:
            return JSONResponse(rt.transmitter.describe(_own(rt, p, stream_id)))
        return JSONResponse([rt.transmitter.describe(s) for s in rt.store.streams(p.id)])
    return await _guard(request, READ, go)


@router.patch("/v1/ssf/streams")
@router.put("/v1/ssf/streams")
async def update_stream(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        stream = _own(rt, p, body.get("stream_id"))
        fields = {k: v for k, v in body.items() if k != "stream_id"}
        out = await asyncio.to_thread(rt.transmitter.update, stream, fields,
                                      replace=request.method == "PUT")
        await _audit_stream(request, p, "stream updated", out)
        return JSONResponse(out)
    return await _guard(request, MANAGE, go)


@router.delete("/v1/ssf/streams")
async def delete_stream(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        stream = _own(rt, p, stream_id)
        await asyncio.to_thread(rt.store.delete_stream, stream.stream_id)
        await _audit_stream(request, p, "stream deleted", {"stream_id": stream.stream_id})
        return Response(status_code=204)
    return await _guard(request, MANAGE, go)


@router.get("/v1/ssf/status")
async def get_status(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        s = _own(rt, p, stream_id)
        out = {"stream_id": s.stream_id, "status": s.status}
        if s.reason:
            out["reason"] = s.reason
        return JSONResponse(out)
    return await _guard(request, READ, go)


@router.post("/v1/ssf/status")
async def post_status(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        s = _own(rt, p, body.get("stream_id"))
        status, reason = body.get("status"), body.get("reason")
        if status not in STATUSES:
            raise StreamError(400, f"status must be one of {', '.join(STATUSES)}")
        reason = str(reason)[:500] if reason else None
        await asyncio.to_thread(rt.store.set_status, s.stream_id, status, reason)
        await _audit_stream(request, p, f"stream {status}", {"stream_id": s.stream_id})
        await _kick(request, s)
        out = {"stream_id": s.stream_id, "status": status}
        return JSONResponse({**out, "reason": reason} if reason else out)
    return await _guard(request, MANAGE, go)


@router.post("/v1/ssf/verify", status_code=204)
async def post_verify(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        import time

        body = await _json(request)
        s = _own(rt, p, body.get("stream_id"))
        gap = rt.transmitter.min_verification_interval
        if gap and s.verified_at and time.time() - s.verified_at < gap:
            return JSONResponse({"error": "too_many_requests", "reason": "verification "
                                 f"at most every {gap} s"}, 429,
                                headers={"Retry-After": str(gap)})
        state = body.get("state")
        jti = await asyncio.to_thread(rt.transmitter.verification, s,
                                      str(state)[:256] if state else None)
        await _audit_stream(request, p, "verification queued", {"stream_id": s.stream_id,
                                                                "jti": jti})
        await _kick(request, s)
        return Response(status_code=204)
    return await _guard(request, MANAGE, go)


@router.post("/v1/ssf/subjects:add")
@router.post("/v1/ssf/subjects:remove")
async def change_subject(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        s = _own(rt, p, body.get("stream_id"))
        add = request.url.path.endswith(":add")
        try:
            await asyncio.to_thread(rt.transmitter.change_subject, s, body.get("subject"),
                                    add=add)
        except SetError as e:
            raise StreamError(400, e.description) from None
        await _audit_stream(request, p, "subject added" if add else "subject removed",
                            {"stream_id": s.stream_id})
        return Response(status_code=200)
    return await _guard(request, MANAGE, go)


@router.post("/v1/ssf/poll/{stream_id}")
async def poll(stream_id: str, request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        s = _own(rt, p, stream_id)
        if s.config.get("delivery", {}).get("method") != POLL:
            raise StreamError(400, "this stream is push, not poll")
        raw_ack = body.get("ack", [])
        if not isinstance(raw_ack, list):
            raise StreamError(400, "ack must be a list of jti strings")
        ack = [j for j in raw_ack if isinstance(j, str)]
        errs = body.get("setErrs") or {}
        await asyncio.to_thread(rt.store.mark, s.stream_id, ack, ACKED)
        for jti, e in (errs.items() if isinstance(errs, dict) else []):
            detail = f"{e.get('err')}: {e.get('description', '')}" if isinstance(e, dict) \
                else "refused"
            await asyncio.to_thread(rt.store.mark, s.stream_id, [str(jti)], "refused",
                                    detail[:500])
        limit = body.get("maxEvents", 100)
        limit = limit if isinstance(limit, int) and 0 <= limit <= 1000 else 100
        if s.status != "enabled" or limit == 0:
            return JSONResponse({"sets": {}, "moreAvailable": False})
        waited = 0.0
        while True:
            items = [q for q in await asyncio.to_thread(rt.store.pending, s.stream_id,
                                                         limit + 1) if q.state == PENDING]
            if items or body.get("returnImmediately", True) is not False or waited >= 10:
                break
            await asyncio.sleep(0.5)
            waited += 0.5
        return JSONResponse({"sets": {q.jti: q.token for q in items[:limit]},
                             "moreAvailable": len(items) > limit})
    return await _guard(request, READ, go)


async def _kick(request: Request, s: Stream) -> None:
    if s.config.get("delivery", {}).get("method") != PUSH:
        return
    try:
        client = await request.app.state.temporal()
        await kick(client, request.app.state.settings, s.stream_id)
    except Exception as e:  # the worker's emitter sweeps pending SETs anyway
        log.warning("ssf.kick_failed", stream_id=s.stream_id, error=type(e).__name__)


async def _audit_stream(request: Request, p: Principal, what: str,
                        stream: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from stanch.models import AuditEvent, AuditType

    data = {"stream_id": stream.get("stream_id"),
            "delivery": (stream.get("delivery") or {}).get("method"),
            "events_delivered": stream.get("events_delivered"), **{
                k: v for k, v in stream.items() if k == "jti"}}
    await asyncio.to_thread(request.app.state.audit.append, AuditEvent(
        type=AuditType.ssf_stream, at=datetime.now(UTC), actor=p.id, reason=what, data=data))


# --------------------------------------------------------------------------- operators


@router.get("/v1/ssf/overview", dependencies=[Depends(require(Role.viewer))])
async def overview(request: Request) -> JSONResponse:
    """What ``stanch ssf streams`` shows: streams Stanch transmits, with what waits or
    failed; streams Stanch receives, with their status and verification."""
    rt = runtime(request.app)
    settings = request.app.state.settings

    def collect() -> dict[str, Any]:
        out = []
        for s in rt.store.streams():
            out.append({"stream_id": s.stream_id, "owner": s.owner, "status": s.status,
                        "delivery": s.config.get("delivery", {}).get("method"),
                        "events_delivered": s.config.get("events_delivered", []),
                        "queue": rt.store.counts(s.stream_id),
                        "last_error": rt.store.last_error(s.stream_id)})
        received = []
        for name, cfg in settings.ssf.transmitters.items():
            r = rt.store.remote(name)
            received.append({"name": name, "issuer": cfg.issuer, "delivery": cfg.delivery,
                             "stream_id": r.get("stream_id"), "status": r.get("status"),
                             "verified_at": r.get("verified_at"),
                             "verification_pending": bool(r.get("state"))})
        return {"issuer": rt.transmitter.issuer, "transmitting": out, "receiving": received}
    return JSONResponse(await asyncio.to_thread(collect))


@router.post("/v1/ssf/transmitters/{name}/{op}", dependencies=[Depends(require(Role.admin))])
async def manage_remote(name: str, op: str, request: Request) -> JSONResponse:
    """Receiver-side stream management: connect | verify | pause | enable."""
    rt = runtime(request.app)
    settings = request.app.state.settings
    try:
        rt.receiver.config(name)
        if op == "connect":
            base = settings.api.public_url or issuer_of(settings)
            return JSONResponse(await manage.connect(rt.receiver, name, base))
        if op == "verify":
            await manage.verify(rt.receiver, name)
            return JSONResponse({"requested": True})
        if op in ("pause", "enable"):
            status = "paused" if op == "pause" else "enabled"
            return JSONResponse(await manage.set_status(rt.receiver, name, status))
    except SetError as e:
        return JSONResponse({"error": "unknown_transmitter", "reason": e.description}, 404)
    except SsfClientError as e:
        return JSONResponse({"error": "transmitter_error", "reason": str(e)}, 502)
    return JSONResponse({"error": "unknown_operation",
                         "reason": "one of connect, verify, pause, enable"}, 404)
