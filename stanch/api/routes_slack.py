"""Slack interactivity: the Approve/Deny buttons of an approval message become decisions.

Slack signs each request with the app's signing secret over the raw body
(``v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))``). A verified request always gets
a 200 with an ephemeral message, refusals included, because Slack shows any other status
as a generic failure to the person who clicked.

A Slack user acts as the principal ``settings.notify.slack_users[user.id]``, with the groups
and roles ``settings.principals`` gives it; an unmapped user, or one without the approver
role, is refused here and the refusal is audited through the decider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stanch.api.auth import has_role
from stanch.api.contract import SLACK
from stanch.api.problems import problem_responses
from stanch.config import Settings
from stanch.logging import get_logger
from stanch.models import Principal, Role
from stanch.text import find_bad_text

log = get_logger(__name__)

router = APIRouter(tags=["integrations"])

MAX_AGE_SECONDS = 300
_VERDICTS = {"stanch_approve": "approve", "stanch_deny": "deny"}


class SlackReply(BaseModel):
    """An ephemeral message for the person who clicked."""

    response_type: str = "ephemeral"
    replace_original: bool = False
    text: str


_SLACK_DOC: dict[str, Any] = {
    "security": [{SLACK: []}],
    "parameters": [{
        "name": "X-Slack-Request-Timestamp", "in": "header", "required": True,
        "schema": {"type": "string"},
        "description": "Unix seconds, signed with the body; older than 5 minutes is refused."}],
    "requestBody": {
        "required": True,
        "description": "What Slack posts for a button click: a form whose `payload` field "
                       "holds the interaction as JSON. The signature covers the raw bytes.",
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["payload"],
            "properties": {"payload": {"type": "string",
                                       "description": "The interaction, as JSON."}}}}},
    },
}


@router.post("/v1/integrations/slack/interactions", response_model=SlackReply,
             openapi_extra=_SLACK_DOC, responses={
                 200: {"description": "A verified request: the outcome (refusals included) "
                                      "as an ephemeral message, since Slack shows any other "
                                      "status as a generic failure."},
                 **problem_responses(
                     s400="The form has no `payload` field holding a JSON object.",
                     s401="Missing, stale or bad Slack signature.",
                     s404="Slack interactivity is not configured.",
                     s413="The body is larger than `api.max_body_bytes`.")})
async def slack_interactions(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    secret = settings.notify.slack_signing_secret
    if secret is None:
        raise HTTPException(404, detail="Slack interactivity is not configured")

    # The app-wide BodyLimit has refused an oversized body before this point; headers and
    # freshness are checked before the body is read, the signature before it is parsed.
    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    _check_freshness(timestamp, signature)
    body = await request.body()
    if len(body) > settings.api.max_body_bytes:
        raise HTTPException(413, detail="request body too large")
    verify_slack_signature(secret.get_secret_value().encode(), body, timestamp=timestamp,
                           signature=signature)

    payload = _payload(body)
    if payload.get("type") != "block_actions":
        return _reply("Nothing for Stanch to do with this interaction.")
    action = next(
        (
            a
            for a in payload.get("actions") or []
            if isinstance(a, dict) and a.get("action_id") in _VERDICTS
        ),
        None,
    )
    if action is None:
        return _reply("Nothing for Stanch to do with this interaction.")
    workflow_id, sep, step_id = str(action.get("value", "")).partition("|")
    if not sep or not workflow_id or not step_id:
        return _reply("This button does not name a containment step.")
    verdict = _VERDICTS[action["action_id"]]

    user = payload.get("user")
    slack_user = str(user.get("id") or "") if isinstance(user, dict) else ""
    decider = request.app.state.decider
    principal_id = settings.notify.slack_users.get(slack_user) if slack_user else None
    refusal: tuple[str, str] | None = None
    principal: Principal | None = None
    if principal_id is None:
        refusal = ("UnknownSlackUser", "your Slack account is not mapped to a Stanch principal")
    else:
        principal = request.app.state.authenticator.principal_for(principal_id)
        if not has_role(principal, Role.approver):
            refusal = ("Forbidden", f"principal {principal_id!r} lacks the 'approver' role")
    if refusal is not None:
        kind, reason = refusal
        log.warning("slack.decision_refused", workflow_id=workflow_id, step_id=step_id,
                    slack_user=slack_user, principal=principal_id, refusal=kind)
        await decider.audit_refusal(
            workflow_id=workflow_id, step_id=step_id, verdict=verdict, principal=principal,
            channel="slack", reason=reason, kind=kind, actor=principal_id or f"slack:{slack_user}",
        )
        return _reply(f"Refused (403): {reason}.")

    assert principal is not None
    try:
        outcome = await decider.decide(
            workflow_id=workflow_id,
            step_id=step_id,
            verdict=verdict,
            principal=principal,
            comment="via Slack",
            channel="slack",
        )
    except Exception as exc:
        log.error("slack.decision_error", workflow_id=workflow_id, step_id=step_id,
                  principal=principal.id, error=type(exc).__name__)
        return _reply("Stanch could not record your decision right now; try again or use "
                      "`stanch approve`/`stanch deny`.")
    log.info("slack.decision", workflow_id=workflow_id, step_id=step_id, verdict=verdict,
             principal=principal.id, ok=outcome.ok)
    if outcome.ok:
        done = "Approved" if verdict == "approve" else "Denied"
        return _reply(f"{done} step `{step_id}` of `{workflow_id}` as {principal.id}.")
    return _reply(f"Refused: {outcome.reason}")


def verify_slack_signature(
    secret: bytes,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
) -> None:
    """Raise a 401 HTTPException unless the Slack signature over ``body`` is valid and fresh."""
    _check_freshness(timestamp, signature, now=now)
    assert timestamp is not None and signature is not None
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise HTTPException(401, detail="bad Slack signature")


def _check_freshness(timestamp: str | None, signature: str | None, *,
                     now: float | None = None) -> None:
    if not timestamp or not signature:
        raise HTTPException(401, detail="missing Slack signature headers")
    try:
        ts = int(timestamp) if len(timestamp) < 20 else None
    except ValueError:
        ts = None
    if ts is None:
        raise HTTPException(401, detail="malformed Slack request timestamp")
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_AGE_SECONDS:
        raise HTTPException(401, detail="stale Slack request timestamp (replay window 5 min)")


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode(), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise HTTPException(400, detail="expected a form field `payload` holding JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, detail="`payload` must be a JSON object")
    bad = find_bad_text(payload)
    if bad is not None:
        raise HTTPException(400, detail=f"`payload` {bad[0]}: text {bad[1]}")
    return payload


def _reply(text: str) -> JSONResponse:
    return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": text})
