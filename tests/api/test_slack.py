"""Slack interactivity: signature checks, user mapping, and the call to the decider."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from stanch.api.auth import Authenticator
from stanch.api.routes_slack import router
from stanch.config import NotifySettings, PrincipalSettings, Settings
from stanch.models import Principal, Role

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/v1/integrations/slack/interactions"


@dataclass
class _Outcome:
    ok: bool
    reason: str


@dataclass
class FakeDecider:
    outcome: _Outcome = field(default_factory=lambda: _Outcome(True, "recorded"))
    decisions: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    async def decide(self, **kwargs: Any) -> _Outcome:
        if self.fail:
            raise RuntimeError("temporal down")
        self.decisions.append(kwargs)
        return self.outcome

    async def audit_refusal(self, **kwargs: Any) -> None:
        self.refusals.append(kwargs)


def _settings(secret: str | None = SIGNING_SECRET) -> Settings:
    return Settings(
        notify=NotifySettings(
            slack_signing_secret=secret,
            slack_users={"U0APPROVER": "alice", "U0VIEWER": "victor", "U0GHOST": "ghost"},
        ),
        principals={
            "alice": PrincipalSettings(groups=["secops"], roles=["approver"],
                                       identity_keys=["mock:alice"]),
            "victor": PrincipalSettings(groups=["secops"], roles=["viewer"]),
        },
    )


@pytest.fixture
def decider() -> FakeDecider:
    return FakeDecider()


def _client(decider: FakeDecider, settings: Settings | None = None) -> httpx.AsyncClient:
    settings = settings or _settings()
    app = FastAPI()
    app.include_router(router)
    app.state.settings = settings
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.decider = decider
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s.test")


def _body(user: str = "U0APPROVER", action_id: str = "stanch_approve",
          value: str = "containment-abc|leaked-key/2/revoke", **over: Any) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": "someone"},
        "actions": [
            {"action_id": "something_else", "value": "x|y"},
            {"action_id": action_id, "value": value, "type": "button"},
        ],
    }
    payload.update(over)
    return urlencode({"payload": json.dumps(payload)}).encode()


def _signed(body: bytes, *, ts: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    sig = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={sig}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def _post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post(URL, content=body, headers=headers)


async def test_signed_approve_reaches_the_decider_as_the_mapped_principal(
    decider: FakeDecider,
) -> None:
    body = _body()
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert resp.json()["response_type"] == "ephemeral"
    assert "Approved" in resp.json()["text"]
    assert decider.decisions == [
        {
            "workflow_id": "containment-abc",
            "step_id": "leaked-key/2/revoke",
            "verdict": "approve",
            "principal": Principal(id="alice", groups=["secops"], roles=[Role.approver],
                                   identity_keys=["mock:alice"]),
            "comment": "via Slack",
            "channel": "slack",
        }
    ]


async def test_deny_button(decider: FakeDecider) -> None:
    body = _body(action_id="stanch_deny")
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert decider.decisions[0]["verdict"] == "deny"
    assert "Denied" in resp.json()["text"]


async def test_decider_refusal_is_a_200_with_the_reason() -> None:
    decider = FakeDecider(outcome=_Outcome(False, "alice already voted on this step"))
    body = _body()
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert resp.json()["text"] == "Refused: alice already voted on this step"


async def test_decider_error_is_a_200_without_internals() -> None:
    decider = FakeDecider(fail=True)
    body = _body()
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert "could not record" in resp.json()["text"]
    assert "temporal down" not in resp.text


async def test_bad_signature_is_401(decider: FakeDecider) -> None:
    body = _body()
    async with _client(decider) as client:
        forged = await _post(client, body, _signed(body, secret="not-the-secret"))
        tampered = await _post(client, _body(action_id="stanch_deny"), _signed(body))
        missing = await _post(client, body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 401
    assert forged.json()["detail"] == "bad Slack signature"
    assert tampered.status_code == 401
    assert missing.status_code == 401
    assert missing.json()["detail"] == "missing Slack signature headers"
    assert decider.decisions == [] and decider.refusals == []


@pytest.mark.parametrize("age", [301, -301, 3600])
async def test_stale_timestamp_is_401(decider: FakeDecider, age: int) -> None:
    body = _body()
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body, ts=int(time.time()) - age))
    assert resp.status_code == 401
    assert "stale" in resp.json()["detail"]
    assert decider.decisions == []


async def test_unknown_slack_user_is_refused_and_audited(decider: FakeDecider) -> None:
    body = _body(user="U0STRANGER")
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert resp.json()["text"].startswith("Refused (403): your Slack account is not mapped")
    assert decider.decisions == []
    assert decider.refusals == [
        {
            "workflow_id": "containment-abc",
            "step_id": "leaked-key/2/revoke",
            "verdict": "approve",
            "principal": None,
            "channel": "slack",
            "reason": "your Slack account is not mapped to a Stanch principal",
            "kind": "UnknownSlackUser",
            "actor": "slack:U0STRANGER",
        }
    ]


@pytest.mark.parametrize("user", ["U0VIEWER", "U0GHOST"])
async def test_mapped_user_without_approver_role_is_refused(
    decider: FakeDecider, user: str
) -> None:
    body = _body(user=user)
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 200
    assert "lacks the 'approver' role" in resp.json()["text"]
    assert decider.decisions == []
    assert decider.refusals[0]["kind"] == "Forbidden"


async def test_other_interactions_are_acknowledged(decider: FakeDecider) -> None:
    async with _client(decider) as client:
        for body in (
            _body(type="view_submission"),
            _body(actions=[{"action_id": "other", "value": "a|b"}]),
            _body(value="no-separator"),
        ):
            resp = await _post(client, body, _signed(body))
            assert resp.status_code == 200
            assert resp.json()["response_type"] == "ephemeral"
    assert decider.decisions == [] and decider.refusals == []


async def test_malformed_payload_is_400(decider: FakeDecider) -> None:
    body = b"payload=%7Bnot-json"
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 400


async def test_not_configured_is_404(decider: FakeDecider) -> None:
    body = _body()
    async with _client(decider, _settings(secret=None)) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 404


async def test_payload_text_that_is_not_unicode_is_400(decider: FakeDecider) -> None:
    from urllib.parse import quote

    body = ("payload=" + quote('{"type": "block_actions", "user": {"id": "\\ud800"}}')).encode()
    async with _client(decider) as client:
        resp = await _post(client, body, _signed(body))
    assert resp.status_code == 400 and "$.user.id" in resp.json()["detail"]
    assert not decider.decisions and not decider.refusals
