"""Stanch as an SSF transmitter: metadata, JWKS, stream configuration, status,
verification, subjects and poll (SSF 1.0 sections 7 and 8, RFC 8936).

Bearer auth on every stream endpoint: the group ``ssf.manage`` (or the admin role) may
configure streams, ``ssf.read`` (or ``ssf.manage``) may read and poll them; a receiver sees
only the streams it created.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from stanch.api._ssf import SsfRuntime, runtime
from stanch.api.auth import AuthFailure, has_role
from stanch.api.problems import problem_response, problem_responses
from stanch.logging import get_logger
from stanch.models import Principal, Role
from stanch.ssf.client import POLL, PUSH
from stanch.ssf.delivery import kick
from stanch.ssf.set import SetError
from stanch.ssf.store import ACKED, PENDING, Stream
from stanch.ssf.transmitter import STATUSES, StreamError

log = get_logger("stanch.api.ssf")
MANAGE, READ = "ssf.manage", "ssf.read"
router = APIRouter(tags=["ssf"])


def _doc(scope: str, *statuses: int, body: bool = False) -> dict[str, Any]:
    """Route keywords documenting a stream endpoint: its bearer token (an operator token,
    see ``operatorToken``), its JSON object body, and the problems it answers."""
    extra: dict[str, Any] = {"security": [{"operatorToken": []}]}
    if body:
        extra["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "additionalProperties": True}}},
            "description": "An SSF 1.0 request object (§8.1); see the SSF specification."}
    return {"openapi_extra": extra, "responses": problem_responses(
        *statuses, s401="No token, or one that is unknown, expired or badly signed.",
        s403=f"The principal lacks the scope `{scope}` (the group, or the admin role).",
        s404="No such stream, or one another receiver created.",
        **({"s400": "The body is not a JSON object, or the configuration is invalid "
                    "(the detail says which field)."} if body else {}))}

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
        return problem_response(self.status, self.reason, code=self.error, headers=headers)


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


@router.get("/.well-known/ssf-configuration",
            responses=problem_responses(s404="Not this transmitter's issuer path."))
@router.get("/.well-known/ssf-configuration/{path:path}",
            responses=problem_responses(s404="Not this transmitter's issuer path."))
async def metadata(request: Request, path: str = "") -> JSONResponse:
    rt = runtime(request.app)
    if request.url.path.rstrip("/") != rt.transmitter.well_known_path().rstrip("/"):
        return problem_response(404, "no such issuer", code="not_found")
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
        return problem_response(e.status, e.reason, code="invalid_request")


@router.post("/v1/ssf/streams", status_code=201, **_doc(MANAGE, body=True))
async def create_stream(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        body = await _json(request)
        stream = await asyncio.to_thread(rt.transmitter.create, p.id, body)
        await _audit_stream(request, p, "stream created", stream)
        return JSONResponse(stream, status_code=201)
    return await _guard(request, MANAGE, go)


@router.get("/v1/ssf/streams", **_doc(READ))
async def read_streams(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        if stream_id is not None:
            return JSONResponse(rt.transmitter.describe(_own(rt, p, stream_id)))
        return JSONResponse([rt.transmitter.describe(s) for s in rt.store.streams(p.id)])
    return await _guard(request, READ, go)


@router.patch("/v1/ssf/streams", **_doc(MANAGE, body=True))
@router.put("/v1/ssf/streams", **_doc(MANAGE, body=True))
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


@router.delete("/v1/ssf/streams", status_code=204, response_class=Response,
                **_doc(MANAGE))
async def delete_stream(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        stream = _own(rt, p, stream_id)
        await asyncio.to_thread(rt.store.delete_stream, stream.stream_id)
        await _audit_stream(request, p, "stream deleted", {"stream_id": stream.stream_id})
        return Response(status_code=204)
    return await _guard(request, MANAGE, go)


@router.get("/v1/ssf/status", **_doc(READ))
async def get_status(request: Request, stream_id: str | None = None) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        s = _own(rt, p, stream_id)
        out = {"stream_id": s.stream_id, "status": s.status}
        if s.reason:
            out["reason"] = s.reason
        return JSONResponse(out)
    return await _guard(request, READ, go)


@router.post("/v1/ssf/status", **_doc(MANAGE, body=True))
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


@router.post("/v1/ssf/verify", status_code=204, response_class=Response,
              **_doc(MANAGE, 429, body=True))
async def post_verify(request: Request) -> Response:
    async def go(rt: SsfRuntime, p: Principal) -> Response:
        import time

        body = await _json(request)
        s = _own(rt, p, body.get("stream_id"))
        gap = rt.transmitter.min_verification_interval
        if gap and s.verified_at and time.time() - s.verified_at < gap:
            return problem_response(429, f"verification at most every {gap} s",
                                    code="too_many_requests", headers={"Retry-After": str(gap)})
        state = body.get("state")
        jti = await asyncio.to_thread(rt.transmitter.verification, s,
                                      str(state)[:256] if state else None)
        await _audit_stream(request, p, "verification queued", {"stream_id": s.stream_id,
                                                                "jti": jti})
        await _kick(request, s)
        return Response(status_code=204)
    return await _guard(request, MANAGE, go)


@router.post("/v1/ssf/subjects:add", response_class=Response, **_doc(MANAGE, body=True))
@router.post("/v1/ssf/subjects:remove", response_class=Response,
             **_doc(MANAGE, body=True))
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


@router.post("/v1/ssf/poll/{stream_id}", **_doc(READ, body=True))
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


