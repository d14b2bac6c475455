"""Notifications as a Temporal activity: a signed generic webhook and a Slack message.

Channels are independent. One failing does not stop the other; its reason is reported in
``NotifyResult.failed``. The activity raises (so Temporal retries) only when *every*
configured channel failed with a retryable error (connection, timeout, 429, 5xx). That rule
also keeps delivery at most once per channel: a retry only happens when nothing was
delivered, so no receiver sees the same notification twice from us. The generic webhook
carries ``webhook-id = notification_id`` so receivers can drop duplicates anyway.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from stanch.config import ConfigError, Settings
from stanch.logging import get_logger
from stanch.models import NotifyRequest, NotifyResult
from stanch.redact import redact_text

log = get_logger(__name__)

APPROVE_ACTION_ID = "stanch_approve"
DENY_ACTION_ID = "stanch_deny"

_SLACK_MAX_FIELDS = 10
_SLACK_FIELD_CHARS = 2000
_SLACK_TEXT_CHARS = 3000
_SLACK_HEADER_CHARS = 150


class _ChannelFailure(Exception):
    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class NotifyActivities:
    """Holds the HTTP client and signing key; register ``notify`` with the worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        cfg = settings.notify
        self._webhook_url = cfg.webhook_url
        self._slack_url = cfg.slack_webhook_url
        self._signer: Webhook | None = None
        if cfg.webhook_url:
            if cfg.webhook_secret is None:
                raise ConfigError("setting notify.webhook_secret: required with webhook_url")
            try:
                self._signer = Webhook(cfg.webhook_secret.get_secret_value())
            except Exception:
                raise ConfigError(
                    "setting notify.webhook_secret: must be a `whsec_` base64 secret"
                ) from None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._said_unconfigured = False

    def channels(self) -> list[str]:
        out = []
        if self._webhook_url:
            out.append("webhook")
        if self._slack_url:
            out.append("slack")
        return out

    async def aclose(self) -> None:
        await self._client.aclose()

    @activity.defn(name="notify")
    async def notify(self, req: NotifyRequest) -> NotifyResult:
        channels = self.channels()
        if not channels:
            if not self._said_unconfigured:
                self._said_unconfigured = True
                log.info("notify.no_channels", notification_id=req.notification_id)
            return NotifyResult(notification_id=req.notification_id)

        sends = {"webhook": self._send_webhook, "slack": self._send_slack}
        outcomes = await asyncio.gather(
            *(sends[c](req) for c in channels), return_exceptions=True
        )
        result = NotifyResult(notification_id=req.notification_id)
        failures: list[_ChannelFailure] = []
        for channel, outcome in zip(channels, outcomes, strict=True):
            if outcome is None:
                result.delivered.append(channel)
                log.info("notify.delivered", notification_id=req.notification_id,
                         kind=req.kind, workflow_id=req.workflow_id, channel=channel)
                continue
            failure = (
                outcome
                if isinstance(outcome, _ChannelFailure)
                else _ChannelFailure(f"internal error: {type(outcome).__name__}", False)
            )
            failures.append(failure)
            result.failed[channel] = failure.reason
            log.warning("notify.failed", notification_id=req.notification_id,
                        workflow_id=req.workflow_id, channel=channel, reason=failure.reason,
                        retryable=failure.retryable)

        if len(failures) == len(channels) and all(f.retryable for f in failures):
            delays = [f.retry_after for f in failures if f.retry_after is not None]
            raise ApplicationError(
                "every notification channel failed: "
                + "; ".join(f"{c}: {r}" for c, r in result.failed.items()),
                result.model_dump(mode="json"),
                type="NotifyChannelsUnavailable",
                next_retry_delay=timedelta(seconds=max(delays)) if delays else None,
            )
        return result

    # ------------------------------------------------------------------ channels

    async def _send_webhook(self, req: NotifyRequest) -> None:
        assert self._webhook_url is not None and self._signer is not None
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "type": f"stanch.{req.kind}",
                "timestamp": now.isoformat(),
                "data": req.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": req.notification_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(req.notification_id, now, body),
        }
        await self._post(self._webhook_url, body.encode(), headers)

    async def _send_slack(self, req: NotifyRequest) -> None:
        assert self._slack_url is not None
        body = json.dumps(slack_message(req))
        await self._post(self._slack_url, body.encode(), {"content-type": "application/json"})

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            resp = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise _ChannelFailure("timed out", retryable=True) from None
        except httpx.TransportError as exc:
            # The URL itself may hold a secret (Slack webhook URLs do): never report it.
            detail = redact_text(str(exc), extra=[url]) or type(exc).__name__
            raise _ChannelFailure(f"connection failed: {detail}", retryable=True) from None
        if resp.is_success:
            return
        text = redact_text(resp.text[:200].strip(), extra=[url])
        reason = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
        retryable = resp.status_code == 429 or resp.status_code >= 500
        raise _ChannelFailure(reason, retryable, _retry_after(resp) if retryable else None)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None


# --------------------------------------------------------------------------- Slack blocks


def slack_message(req: NotifyRequest) -> dict[str, Any]:
    """A Block Kit message for an incoming webhook: header, facts, deadline, buttons."""
    facts: dict[str, str] = {}
    if req.subject:
        facts["Identity"] = req.subject
    facts["Workflow"] = req.workflow_id
    if req.step_id:
        facts["Step"] = req.step_id
    facts.update(req.fields)

    section: dict[str, Any] = {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": _clip(f"*{_escape(k)}*\n{_escape(v)}", _SLACK_FIELD_CHARS)}
            for k, v in list(facts.items())[:_SLACK_MAX_FIELDS]
        ],
    }
    if req.text:
        section["text"] = {"type": "mrkdwn", "text": _clip(_escape(req.text), _SLACK_TEXT_CHARS)}

    context = [f"`{req.kind}`", f"notification `{req.notification_id}`"]
    if req.deadline is not None:
        ts = int(req.deadline.timestamp())
        fallback = req.deadline.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        context.insert(0, f"Decide by <!date^{ts}^{{date_short_pretty}} {{time}}|{fallback}>")

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(req.title, _SLACK_HEADER_CHARS),
                     "emoji": True},
        },
        section,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
    ]
    if req.actions and req.step_id:
        value = f"{req.workflow_id}|{req.step_id}"
        blocks.append(
            {
                "type": "actions",
                "block_id": "stanch_decision",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "action_id": APPROVE_ACTION_ID,
                        "value": value,
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Deny"},
                        "style": "danger",
                        "action_id": DENY_ACTION_ID,
                        "value": value,
                    },
                ],
            }
        )
    return {"text": _clip(req.title, _SLACK_TEXT_CHARS), "blocks": blocks}


def _escape(text: str) -> str:
    # Slack mrkdwn treats these as control characters (links, mentions).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
