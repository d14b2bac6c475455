"""The FastAPI application: webhooks, containments, decisions, audit, health, metrics.

The API never reaches a provider: every action on an identity is a durable, audited step
in a workflow. It authenticates callers, audits what workflows cannot see (refused
alerts and refused decisions), and talks to Temporal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from temporalio.client import Client

from stanch.api import contract, problems
from stanch.api.auth import Authenticator, require
from stanch.api.limits import BodyLimit
from stanch.api.refused_webhooks import RefusalTally
from stanch.audit import AuditStore, open_store
from stanch.audit.deliveries import open_deliveries
from stanch.config import Settings
from stanch.dispatch import Dispatcher
from stanch.ingest import DeadLetterStore
from stanch.inventory import Inventory, load_inventory
from stanch.logging import get_logger
from stanch.metrics import APPROVAL_OLDEST_AGE, APPROVALS_PENDING, CONTAINMENTS_OPEN
from stanch.models import Role
from stanch.playbook import Playbook, load_playbooks
from stanch.statedir import make_private
from stanch.temporal import connect

log = get_logger("stanch.api")


class TemporalHandle:
    """Connects on first use, so the API starts (and answers /healthz) before Temporal."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect(self.settings, retries=3)
        return self._client


def create_app(settings: Settings, *, client: Client | None = None,
               audit: AuditStore | None = None, inventory: Inventory | None = None,
               playbooks: Sequence[Playbook] | None = None,
               search_attributes: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.refused_webhooks.close()
        app.state.deliveries.close()
        app.state.console_sessions.close()
        app.state.dead_letters.close()
        if owns_audit:
            app.state.audit.close()

    app = FastAPI(title="Stanch", version="0.1.0", lifespan=lifespan,
                  description="Graduated, reversible, audited identity containment.")
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes,
                       timeout=settings.api.body_timeout_seconds)
    problems.install(app)
    contract.install(app)
    owns_audit = audit is None
    make_private(settings.state_dir)
    loaded = list(playbooks) if playbooks is not None else load_playbooks([settings.playbooks_dir])
    app.state.settings = settings
    app.state.audit = audit or open_store(settings)
    app.state.inventory = inventory or load_inventory(settings)
    app.state.playbooks = loaded
    app.state.dead_letters = DeadLetterStore.for_settings(settings)
    app.state.deliveries = open_deliveries(settings)
    app.state.refused_webhooks = RefusalTally(app.state.audit)
    make_private(settings.state_dir)  # the files just opened: 0600
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.temporal = TemporalHandle(settings, client)
    app.state.dispatcher = Dispatcher(settings, app.state.temporal, lambda: app.state.playbooks,
                                      search_attributes=search_attributes,
                                      audit=app.state.audit)
    from stanch.api.decisions import Decider

    app.state.decider = Decider(app.state.temporal, app.state.audit)

    from stanch.api import routes_alerts, routes_audit, routes_containments, routes_slack

    app.include_router(routes_alerts.router)
    app.include_router(routes_containments.router)
    app.include_router(routes_audit.router, dependencies=[Depends(require(Role.viewer))])
    app.include_router(routes_slack.router)
    if settings.ssf.enabled:
        from stanch.api import routes_ssf

        app.include_router(routes_ssf.router)
    _include_optional(app)
    from stanch.console import mount as mount_console

    mount_console(app)

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz(request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Health,
             responses=problems.problem_responses(503, s503="Temporal does not answer."))
    async def readyz(request: Request) -> JSONResponse:
        try:
            client = await request.app.state.temporal()
            await client.service_client.check_health()
        except Exception as err:
            return problems.problem_response(503, f"Temporal does not answer: {str(err)[:200]}",
                                             code="temporal_unavailable")
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["health"], dependencies=[Depends(require(Role.viewer))],
             response_class=PlainTextResponse, responses={200: {
                 "description": "Prometheus text exposition format (version 0.0.4).",
                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics(request: Request) -> Response:
        try:
            client = await request.app.state.temporal()
            await asyncio.wait_for(_refresh_containment_gauges(client), timeout=5)
        except Exception as err:  # a scrape still answers, with the last values seen
            log.warning("metrics.refresh_failed", error=str(err)[:200])
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class Health(BaseModel):
    status: Literal["ok"]


_APPROVAL_QUERIES_MAX = 50


async def _refresh_containment_gauges(client: Client) -> None:
    """Running containments by rung and status, and pending approvals with the oldest age,
    from Temporal visibility (the search attributes the workflow keeps current)."""
    from datetime import UTC, datetime

    from workflows.containment import SA_RUNG, SA_STATUS, ContainmentWorkflow

    counts: dict[tuple[str, str], int] = {}
    waiting: list[str] = []
    query = "WorkflowType = 'ContainmentWorkflow' AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query, limit=10_000):
        rung = wf.typed_search_attributes.get(SA_RUNG) or 0
        status = wf.typed_search_attributes.get(SA_STATUS) or "unknown"
        counts[(str(rung), status)] = counts.get((str(rung), status), 0) + 1
        if status == "awaiting_approval":
            waiting.append(wf.id)
    CONTAINMENTS_OPEN.clear()
    for (rung_label, status), n in counts.items():
        CONTAINMENTS_OPEN.labels(rung_label, status).set(n)
    now = datetime.now(UTC)
    pending = max(0, len(waiting) - _APPROVAL_QUERIES_MAX)
    oldest = 0.0
    for wid in waiting[:_APPROVAL_QUERIES_MAX]:
        st = await client.get_workflow_handle(wid).query(ContainmentWorkflow.status)
        for p in st.pending_approvals:
            pending += 1
            asked = datetime.fromisoformat(p["requested_at"])
            oldest = max(oldest, (now - asked).total_seconds())
    APPROVALS_PENDING.set(pending)
    APPROVAL_OLDEST_AGE.set(oldest)


def _include_optional(app: FastAPI) -> None:
    """Routers of capabilities that live in their own modules (elevation, …)."""
    import importlib

    try:
        module = importlib.import_module("stanch.api.routes_elevations")
    except ModuleNotFoundError:
        return
    app.include_router(module.router)
