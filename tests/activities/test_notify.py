"""The notify activity: Standard Webhooks signing, Slack blocks, per-channel failures."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities, slack_message
from stanch.config import ConfigError, NotifySettings, Settings
from stanch.models import NotifyRequest, NotifyResult

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
HOOK = "https://hooks.example.test/stanch"
SLACK = "https://hooks.slack.test/services/T000/B000/secretpart"


def _settings(webhook: bool = True, slack: bool = True) -> Settings:
    return Settings(
        notify=NotifySettings(
            webhook_url=HOOK if webhook else None,
            webhook_secret=SECRET if webhook else None,
            slack_webhook_url=SLACK if slack else None,
        )
    )


def _request(**over: Any) -> NotifyRequest:
    base: dict[str, Any] = {
        "notification_id": "ntf-123",
        "kind": "approval_requested",
        "workflow_id": "containment-abc",
        "step_id": "leaked-key/2/revoke",
        "subject": "mock:svc-deploy",
        "title": "Approve revoke of mock:svc-deploy",
        "text": "Leaked key <found> in repo & pushed",
        "fields": {"Severity": "high", "Playbook": "leaked-key"},
        "actions": True,
        "deadline": datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
    }
    base.update(over)
    return NotifyRequest(**base)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def _run(acts: NotifyActivities, req: NotifyRequest) -> NotifyResult:
    result: NotifyResult = await ActivityEnvironment().run(acts.notify, req)
    return result


# --------------------------------------------------------------------------- webhook


@respx.mock
async def test_webhook_is_signed_per_standard_webhooks(client: httpx.AsyncClient) -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(204))
    acts = NotifyActivities(_settings(slack=False), client=client)
    result = await _run(acts, _request())

    assert result == NotifyResult(notification_id="ntf-123", delivered=["webhook"])
    sent = route.calls.last.request
    assert sent.headers["webhook-id"] == "ntf-123"
    payload = Webhook(SECRET).verify(sent.content, dict(sent.headers))
    assert payload["type"] == "stanch.approval_requested"
    assert payload["data"]["workflow_id"] == "containment-abc"
    assert payload["data"]["step_id"] == "leaked-key/2/revoke"

    # A different secret, or a body changed in transit, does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(b"x" * 32).decode()).verify(sent.content, dict(sent.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(sent.content.replace(b"abc", b"abd"), dict(sent.headers))


def test_webhook_without_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="webhook_secret"):
        NotifyActivities(Settings(notify=NotifySettings(webhook_url=HOOK)))
    with pytest.raises(ConfigError, match="whsec_"):
        NotifyActivities(
            Settings(notify=NotifySettings(webhook_url=HOOK, webhook_secret="whsec_!!!"))
        )


# --------------------------------------------------------------------------- slack


def test_slack_blocks_shape() -> None:
    msg = slack_message(_request())
    assert msg["text"] == "Approve revoke of mock:svc-deploy"
    types = [b["type"] for b in msg["blocks"]]
    assert types == ["header", "section", "context", "actions"]

    header, section, context, actions = msg["blocks"]
    assert header["text"] == {
        "type": "plain_text", "text": "Approve revoke of mock:svc-deploy", "emoji": True
    }
    assert section["text"]["text"] == "Leaked key &lt;found&gt; in repo &amp; pushed"
    field_texts = [f["text"] for f in section["fields"]]
    assert "*Identity*\nmock:svc-deploy" in field_texts
    assert "*Severity*\nhigh" in field_texts
    assert all(f["type"] == "mrkdwn" for f in section["fields"])
    ctx = context["elements"][0]["text"]
    assert f"<!date^{int(datetime(2030, 1, 2, 3, 4, tzinfo=UTC).timestamp())}^" in ctx
    assert "2030-01-02 03:04 UTC" in ctx

    approve, deny = actions["elements"]
    assert approve["action_id"] == "stanch_approve" and approve["style"] == "primary"
    assert deny["action_id"] == "stanch_deny" and deny["style"] == "danger"
    assert approve["value"] == deny["value"] == "containment-abc|leaked-key/2/revoke"
    assert approve["type"] == deny["type"] == "button"


def test_slack_without_actions_or_deadline() -> None:
    msg = slack_message(_request(actions=False, deadline=None, text=""))
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "context"]
    assert "text" not in msg["blocks"][1]
    assert "Decide by" not in msg["blocks"][2]["elements"][0]["text"]


def test_slack_limits() -> None:
    fields = {f"f{i}": "v" * 3000 for i in range(20)}
    msg = slack_message(_request(title="t" * 500, fields=fields))
    assert len(msg["blocks"][0]["text"]["text"]) == 150
    assert len(msg["blocks"][1]["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in msg["blocks"][1]["fields"])


@respx.mock
async def test_slack_posts_blocks(client: httpx.AsyncClient) -> None:
    route = respx.post(SLACK).mock(return_value=httpx.Response(200, text="ok"))
    acts = NotifyActivities(_settings(webhook=False), client=client)
    result = await _run(acts, _request())
    assert result.delivered == ["slack"]
    assert json.loads(route.calls.last.request.content) == slack_message(_request())


# --------------------------------------------------------------------------- failures


@respx.mock
async def test_one_channel_failing_does_not_stop_the_other(client: httpx.AsyncClient) -> None:
    respx.post(HOOK).mock(return_value=httpx.Response(503, text="down"))
    respx.post(SLACK).mock(return_value=httpx.Response(200, text="ok"))
    result = await _run(NotifyActivities(_settings(), client=client), _request())
    assert result.delivered == ["slack"]
    assert result.failed == {"webhook": "HTTP 503: down"}


@respx.mock
async def test_client_errors_are_reported_not_retried(client: httpx.AsyncClient) -> None:
    respx.post(HOOK).mock(return_value=httpx.Response(400, text="bad payload"))
    respx.post(SLACK).mock(return_value=httpx.Response(404, text="no_service"))
    result = await _run(NotifyActivities(_settings(), client=client), _request())
    assert result.delivered == []
    assert result.failed == {"webhook": "HTTP 400: bad payload", "slack": "HTTP 404: no_service"}


@respx.mock
async def test_mixed_retryable_and_permanent_is_not_retried(client: httpx.AsyncClient) -> None:
    respx.post(HOOK).mock(return_value=httpx.Response(500))
    respx.post(SLACK).mock(return_value=httpx.Response(410, text="channel_is_archived"))
    result = await _run(NotifyActivities(_settings(), client=client), _request())
    assert result.failed == {"webhook": "HTTP 500", "slack": "HTTP 410: channel_is_archived"}


@respx.mock
async def test_all_retryable_failures_raise_for_temporal(client: httpx.AsyncClient) -> None:
    respx.post(HOOK).mock(side_effect=httpx.ConnectError("connection refused"))
    respx.post(SLACK).mock(
        return_value=httpx.Response(429, text="rate_limited", headers={"Retry-After": "7"})
    )
    with pytest.raises(ApplicationError) as info:
        await _run(NotifyActivities(_settings(), client=client), _request())
    err = info.value
    assert not err.non_retryable
    assert err.type == "NotifyChannelsUnavailable"
    assert err.next_retry_delay is not None and err.next_retry_delay.total_seconds() == 7
    assert "webhook: connection failed" in err.message
    assert "slack: HTTP 429: rate_limited" in err.message
    assert "secretpart" not in err.message


@respx.mock
async def test_timeout_is_retryable(client: httpx.AsyncClient) -> None:
    respx.post(SLACK).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ApplicationError, match="slack: timed out"):
        await _run(NotifyActivities(_settings(webhook=False), client=client), _request())


@respx.mock
async def test_failure_reason_never_contains_the_url(client: httpx.AsyncClient) -> None:
    respx.post(SLACK).mock(return_value=httpx.Response(400, text=f"bad url {SLACK}"))
    result = await _run(NotifyActivities(_settings(webhook=False), client=client), _request())
    assert "secretpart" not in result.failed["slack"]


async def test_no_channels_is_an_empty_result(client: httpx.AsyncClient) -> None:
    acts = NotifyActivities(_settings(webhook=False, slack=False), client=client)
    assert acts.channels() == []
    result = await _run(acts, _request())
    assert result == NotifyResult(notification_id="ntf-123")
