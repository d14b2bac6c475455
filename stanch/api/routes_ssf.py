"""Shared Signals routes: Stanch as receiver, and the operators' view of both directions.

Receiver: ``POST /v1/ssf/push/{name}`` (RFC 8935) answers 202, or 400/401/503 with
``{"err", "description"}`` (a name no transmitter is configured under: a 404 problem);
accepted CAEP/RISC events go down the ordinary alert path (audit ``alert.received``,
inventory, update-with-start). Poll streams are drained by a
:class:`~stanch.ssf.manage.Poller` per configured transmitter, started with the app.
Operators: ``GET /v1/ssf/overview`` and ``POST /v1/ssf/transmitters/{name}/{op}``.
The transmitter's endpoints live in :mod:`stanch.api.routes_ssf_transmitter`, included here.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api._ssf import SsfRuntime, runtime
from stanch.api.auth import require
from stanch.api.problems import problem_response, problem_responses
from stanch.api.refused_webhooks import RefusalTally
from stanch.api.routes_ssf_transmitter import router as transmitter_router
from stanch.ingest import IngestError, PayloadTooLarge
from stanch.logging import get_logger
from stanch.models import Role
from stanch.ssf import manage
from stanch.ssf.client import SsfClientError
from stanch.ssf.delivery import issuer_of
from stanch.ssf.metrics import SSF_RECEIVED
from stanch.ssf.set import SetError, Unavailable

log = get_logger("stanch.api.ssf")


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
router.include_router(transmitter_router)


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
            await _contain(request, alert, datetime.now(UTC))
    await rt.receiver.done(name, outcome)
    SSF_RECEIVED.labels("duplicate" if outcome.duplicate else outcome.kind).inc()


def _err(status: int, err: str, description: str) -> JSONResponse:
    return JSONResponse({"err": err, "description": description}, status_code=status)


class SetErrorBody(BaseModel):
    """An RFC 8935 §2.3 error: the push receiver answers in the transmitters' protocol."""

    err: str = Field(description="The RFC 8935 error code, e.g. `invalid_request`, "
                                 "`invalid_key`, `authentication_failed`.")
    description: str = Field(description="What was wrong with the SET, for people.")


_RFC8935 = "An RFC 8935 error body (`err`, `description`), not a problem: "
_PUSH_DOC: dict[str, Any] = {
    # A token only when the transmitter's configuration lists push tokens.
    "security": [{"ssfPushToken": []}, {}],
    "requestBody": {
        "required": True,
        "description": "One Security Event Token (RFC 8417), a signed JWT in compact form.",
        "content": {"application/secevent+jwt": {"schema": {"type": "string"}}},
    },
}


@router.post("/v1/ssf/push/{name}", status_code=202, response_class=Response,
             openapi_extra=_PUSH_DOC, responses={
    202: {"description": "The SET was accepted (RFC 8935 §2.2): applied, or a duplicate."},
    400: {"model": SetErrorBody, "description": _RFC8935 + "wrong Content-Type, or a SET "
          "that does not validate (signature, issuer, audience, events)."},
    **problem_responses(s404="No transmitter of this name is configured."),
    401: {"model": SetErrorBody, "description": _RFC8935 + "the transmitter's push token "
          "is missing or unknown."},
    503: {"model": SetErrorBody, "description": _RFC8935 + "received but not applied now "
          "(`Retry-After`); a redelivery tries again."}})
async def push(name: str, request: Request) -> Response:
    from stanch.api.routes_alerts import _read_body

    rt = runtime(request.app)
    client = request.client.host if request.client else None
    cfg = request.app.state.settings.ssf.transmitters.get(name)
    if cfg is None:
        # No such receiver endpoint: a missing resource (a problem), not an invalid SET.
        # Anonymous and of the caller's naming: counted, audited only in aggregate.
        _tally(request, "ssf:unknown", "unknown_transmitter", 404)
        log.info("ssf.refused", transmitter=name[:64], err="unknown_transmitter", via="push")
        return problem_response(404, f"no transmitter {name[:64]!r} is configured "
                                     "(ssf.transmitters)", code="unknown_transmitter")
    if cfg.push_tokens and not _token_ok(request.headers.get("authorization"), cfg.push_tokens):
        _tally(request, f"ssf:{name}", "authentication_failed", 401)
        log.info("ssf.refused", transmitter=name, err="authentication_failed", via="push")
        return _err(401, "authentication_failed", "missing or unknown bearer token")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        body = await _read_body(request, request.app.state.settings.api.max_body_bytes)
    except PayloadTooLarge as e:
        return problem_response(413, e.reason, code="too_large")  # as the body limit does
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


def _tally(request: Request, source: str, code: str, status: int) -> None:
    """A refusal anyone could provoke: one aggregate ``alert.refused`` a minute (see
    :mod:`stanch.api.refused_webhooks`), never a record per request."""
    tally: RefusalTally = request.app.state.refused_webhooks
    tally.note(source=source, code=code, status=status, now=datetime.now(UTC))


def _token_ok(header: str | None, tokens: list[Any]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(token.strip().encode(), t.get_secret_value().encode())
    return ok


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


@router.post("/v1/ssf/transmitters/{name}/{op}", dependencies=[Depends(require(Role.admin))],
             responses=problem_responses(
                 s404="No such configured transmitter, or `op` is not one of connect, "
                      "verify, pause, enable.",
                 s502="The transmitter refused the call or could not be reached."))
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
        return problem_response(404, e.description, code="unknown_transmitter")
    except SsfClientError as e:
        return problem_response(502, str(e), code="transmitter_error")
    return problem_response(404, f"no operation {op[:64]!r}: one of connect, verify, pause, "
                            "enable", code="unknown_operation")
