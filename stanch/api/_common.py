"""Pieces every workflow-backed router shares: the Temporal client, id checks, failures."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api.decisions import update_failure
from stanch.api.problems import problem_response
from stanch.api.refusals import audit_refusal
from stanch.models import Principal
from stanch.temporal import answered


def check_workflow_id(workflow_id: str, pattern: re.Pattern[str], noun: str,
                      prefix: str) -> str:
    """Refuse anything that is not one of our opaque ids before it reaches Temporal."""
    if not pattern.fullmatch(workflow_id):
        raise HTTPException(404, f"no such {noun}: ids look like {prefix}-<24 hex>")
    return workflow_id


async def temporal_client(request: Request) -> Client:
    try:
        client: Client = await request.app.state.temporal()
    except Exception as err:
        raise HTTPException(503, f"Temporal unavailable: {str(err)[:200]}") from None
    return client


def failure_response(err: BaseException, *, not_found: str | None = None) -> JSONResponse:
    status, kind, reason = update_failure(err)
    if status == 404 and not_found:
        reason = not_found
    return problem_response(status, reason, code=kind)


async def run_update(request: Request, workflow_id: str, update: Any, arg: BaseModel, *,
                     not_found: str | None = None, principal: Principal | None = None) -> Any:
    """Execute one workflow update; its result as JSON, or the failure as 4xx/503.

    A refusal (403) of an authenticated ``principal`` is audited: the update left no history.
    """
    client = await temporal_client(request)
    handle = client.get_workflow_handle(workflow_id)
    try:
        result = await answered(handle.execute_update(update, arg),
                                request.app.state.settings.temporal.update_timeout_seconds,
                                "request")
    except (RPCError, WorkflowUpdateFailedError) as err:
        status, kind, reason = update_failure(err)
        if status == 403 and principal is not None:
            await audit_refusal(request, principal, reason=reason, refusal=kind,
                                workflow_id=workflow_id)
        return failure_response(err, not_found=not_found)
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


# A query that Temporal cannot answer in this time is a 503, never a request left hanging.
QUERY_TIMEOUT = timedelta(seconds=20)


async def read_status(client: Client, workflow_id: str, query: Any,
                      result_type: type[BaseModel],
                      known: WorkflowExecutionStatus | None = None) -> Any:
    """A workflow's status: its ``query`` while it runs; once it has completed, its result
    (the last status, read from the close event) instead of a query, which would replay
    the whole history on a worker (minutes for a containment that saw thousands of alerts).
    ``known``: the execution status when the caller has it (from a listing). Raises
    RPCError (404 when there is no such workflow)."""
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    if known is None:
        known = (await handle.describe(rpc_timeout=QUERY_TIMEOUT)).status
    if known is WorkflowExecutionStatus.COMPLETED:
        return await handle.result(rpc_timeout=QUERY_TIMEOUT)
    return await handle.query(query, rpc_timeout=QUERY_TIMEOUT)
