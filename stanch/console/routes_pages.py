"""Pages: inbox, containments, one containment, contain by hand, elevations, audit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from temporalio.client import Client
from temporalio.service import RPCError

from stanch.api import routes_elevations
from stanch.api._common import temporal_client
from stanch.audit import AuditStore, checkpoint_key
from stanch.config import Settings
from stanch.console import views
from stanch.console.cache import StatusCache
from stanch.console.render import page, templates
from stanch.console.security import PREFIX, can, current
from stanch.console.sessions import Session
from stanch.models import AuditType, Role
from workflows.containment_types import ContainmentStatus

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_WID = re.compile(r"^containment-[0-9a-f]{24}$")
PAGE_SIZE = 50  # cards per list and page: the oldest first
_STATES = ["active", "awaiting_approval", "contained", "failed", "rolled_back", "resolved"]


def _audit(request: Request) -> AuditStore:
    store: AuditStore = request.app.state.audit
    return store


def _cache(request: Request) -> StatusCache:
    cache: StatusCache = request.app.state.console_cache
    return cache


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _partial(request: Request, name: str, session: Session, **ctx: Any) -> Response:
    """A fragment for htmx polling: 204 (nothing to swap) when it has not changed."""
    html = templates.get_template(name).render(
        {"request": request, "session": session, "me": session.principal,
         "csrf": session.csrf, **ctx})
    version = hashlib.sha256(html.encode()).hexdigest()[:16]
    if request.query_params.get("v") == version:
        return Response(status_code=204)
    return HTMLResponse(html.replace("__VERSION__", version))


# --------------------------------------------------------------------------- inbox


async def _inbox(request: Request, session: Session) -> dict[str, Any]:
    client = await temporal_client(request)
    try:
        statuses = await views.waiting_containments(client, _cache(request))
    except RPCError as err:
        return {"mine": [], "others": [], "mine_total": 0, "others_total": 0, "page_no": 1,
                "last_page": 1, "first_shown": 1, "unread": 0,
                "error": f"Temporal: {err.message}"}
    mine, others = views.inbox(statuses, session.principal, _settings(request))
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isdigit() and 0 < int(raw) < 10_000 else 1
    start = (number - 1) * PAGE_SIZE
    shown_mine, shown_others = (mine[start:start + PAGE_SIZE],
                                others[start:start + PAGE_SIZE])
    await views.attach_evidence(shown_mine + shown_others, _cache(request))
    last = max(1, -(-max(len(mine), len(others)) // PAGE_SIZE))
    return {"mine": shown_mine, "others": shown_others, "mine_total": len(mine),
            "others_total": len(others), "page_no": number, "last_page": last,
            "first_shown": start + 1, "undo": views.UNDO, "error": None,
            "unread": _cache(request).unread}


@router.get("/", response_class=HTMLResponse)
async def inbox(request: Request) -> Response:
    session = current(request)
    return page(request, "inbox.html", session, **await _inbox(request, session))


@router.get("/inbox/list")
async def inbox_list(request: Request) -> Response:
    session = current(request)
    return _partial(request, "_inbox_list.html", session, **await _inbox(request, session))


# --------------------------------------------------------------------------- containments


async def _listing(client: Client, cache: StatusCache,
                   args: dict[str, str]) -> list[ContainmentStatus]:
    query = 'WorkflowType = "ContainmentWorkflow"'
    if args.get("status") in _STATES:
        query += f' AND StanchStatus = "{args["status"]}"'
    if args.get("rung", "").isdigit():
        query += f' AND StanchRung = {int(args["rung"])}'
    if re.fullmatch(r"[a-z_]+", args.get("kind", "")):
        query += f' AND StanchIdentityKind = "{args["kind"]}"'
    wids = [wf.id async for wf in client.list_workflows(query, limit=200)]
    found = await cache.statuses(client, wids)
    text = args.get("q", "").strip().lower()
    provider = args.get("provider", "").strip()
    out = []
    for s in found:
        ident = s.identity
        names = [ident.display_name, ident.ref.id, ident.ref.key, ident.owner or "",
                 *ident.aliases]
        if text and not any(text in n.lower() for n in names):
            continue
        if provider and ident.ref.provider != provider:
            continue
        out.append(s)
    return out


@router.get("/containments", response_class=HTMLResponse)
async def containments(request: Request) -> Response:
    session = current(request)
    args = {k: request.query_params.get(k, "")[:100]
            for k in ("status", "rung", "kind", "provider", "q")}
    client = await temporal_client(request)
    error = None
    try:
        items = await _listing(client, _cache(request), args)
    except RPCError as err:
        items, error = [], f"Temporal: {err.message}"
    return page(request, "containments.html", session, items=items, args=args,
                states=_STATES, providers=sorted(_settings(request).providers), error=error)


async def _containment(request: Request, wid: str) -> dict[str, Any]:
    client = await temporal_client(request)
    try:
        status = await _cache(request).status(client, wid)
    except RPCError as err:
        return {"st": None, "error": f"Temporal: {err.message}"}
    if status is None:
        return {"st": None, "error": f"no containment {wid} (it may have closed)"}
    records = await asyncio.to_thread(_audit(request).query, workflow_id=wid, limit=1000)
    settings = _settings(request)
    pending = {s.step_id: views.approval_state(s, settings) for s in status.steps
               if s.status.value == "awaiting_approval" and s.approval is not None}
    return {"st": status, "error": None, "timeline": views.timeline(records),
            "diff": views.diff, "ladder": views.LADDER, "pending": pending,
            "undo": views.UNDO}


@router.get("/c/{wid}", response_class=HTMLResponse)
async def containment(wid: str, request: Request) -> Response:
    session = current(request)
    if not _WID.match(wid):
        return page(request, "message.html", session, status=404,
                    message=f"no such containment {wid[:80]!r}: ids look like "
                            "containment-<24 hex>")
    ctx = await _containment(request, wid)
    return page(request, "containment.html", session, wid=wid, why_not=views.why_not,
                status=404 if ctx["st"] is None else 200, **ctx)


@router.get("/c/{wid}/live")
async def containment_live(wid: str, request: Request) -> Response:
    session = current(request)
    if not _WID.match(wid):
        return Response(status_code=404)
    ctx = await _containment(request, wid)
    return _partial(request, "_containment_live.html", session, wid=wid,
                    why_not=views.why_not, may_decide=can(session, Role.approver),
                    may_act=can(session, Role.responder), **ctx)




@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
async def raw_alert(alert_id: str, request: Request) -> Response:
    session = current(request)
    records = await asyncio.to_thread(_cache(request).alert_records, alert_id[:200])
    if not records:
        return page(request, "message.html", session, status=404,
                    message=f"no alert {alert_id[:80]!r} in the audit trail")
    return page(request, "alert.html", session, record=records[0])


# --------------------------------------------------------------------------- by hand


@router.get("/contain", response_class=HTMLResponse)
async def contain_form(request: Request) -> Response:
    session = current(request)
    return page(request, "contain.html", session, form={}, plan=None, error=None)


@router.get("/contain/search", response_class=HTMLResponse)
async def identity_search(request: Request, identity: str = "") -> Response:
    session = current(request)
    q = identity[:100]
    text = q.strip().lower()
    matches = []
    if len(text) >= 2:
        for ctx in request.app.state.inventory.all():
            names = [ctx.display_name, ctx.ref.key, ctx.owner or "", *ctx.aliases]
            if any(text in n.lower() for n in names):
                matches.append(ctx)
    return templates.TemplateResponse(request, "_identity_matches.html", {
        "matches": matches[:20], "q": q, "session": session})


# --------------------------------------------------------------------------- elevations


@router.get("/elevations", response_class=HTMLResponse)
async def elevations(request: Request) -> Response:
    session = current(request)
    answer = await routes_elevations.list_elevations(request, 100, session.principal)
    error = None
    listed: dict[str, Any] = {"elevations": []}
    if isinstance(answer, dict):
        listed = answer
    else:
        error = json.loads(bytes(answer.body)).get("reason")
    now = datetime.now(UTC)
    items = []
    for e in listed["elevations"]:
        expires = datetime.fromisoformat(e["expires_at"]) if e.get("expires_at") else None
        items.append(e | {"remaining": views.countdown(expires, now) if expires else ""})
    return page(request, "elevations.html", session, items=items, error=error)


# --------------------------------------------------------------------------- audit


def _audit_query(request: Request) -> tuple[dict[str, str], dict[str, Any], str | None]:
    args = {k: request.query_params.get(k, "").strip()[:200]
            for k in ("identity", "actor", "type", "since", "workflow_id")}
    query: dict[str, Any] = {"subject": args["identity"] or None,
                             "workflow_id": args["workflow_id"] or None}
    error = None
    if args["type"]:
        if args["type"] in AuditType._value2member_map_:
            query["types"] = [AuditType(args["type"])]
        else:
            error = f"type: unknown audit type {args['type']!r}"
    if args["since"]:
        try:
            since = datetime.fromisoformat(args["since"])
            query["since"] = since if since.tzinfo else since.replace(tzinfo=UTC)
        except ValueError:
            error = f"since: not a date/time (got {args['since']!r}; e.g. 2026-12-07T14:00)"
    return args, query, error


def _tail(store: AuditStore, query: dict[str, Any], actor: str, limit: int) -> list[Any]:
    """The newest ``limit`` records matching, newest first."""
    head, _ = store.head()
    after = max(0, head - 20_000)
    records = store.query(**query, after_seq=after, limit=20_000)
    if actor:
        records = [r for r in records if r.actor == actor]
    return list(reversed(records[-limit:]))


@router.get("/audit", response_class=HTMLResponse)
async def audit(request: Request) -> Response:
    session = current(request)
    args, query, error = _audit_query(request)
    store = _audit(request)
    records = [] if error else await asyncio.to_thread(_tail, store, query, args["actor"], 200)
    key = checkpoint_key(_settings(request))
    report = await asyncio.to_thread(store.verify, key)
    marks = await asyncio.to_thread(store.checkpoints)
    return page(request, "audit.html", session, records=records, args=args, error=error,
                report=report, last_checkpoint=marks[-1] if marks else None,
                types=[t.value for t in AuditType])


@router.get("/audit/export")
async def audit_export(request: Request) -> Response:
    current(request)
    args, query, error = _audit_query(request)
    if error:
        return Response(error, status_code=422, media_type="text/plain")
    records = await asyncio.to_thread(_tail, _audit(request), query, args["actor"], 20_000)
    body = "".join(r.model_dump_json() + "\n" for r in reversed(records))
    return Response(body, media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="stanch-audit.jsonl"'})

