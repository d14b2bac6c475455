"""The OpenID conformance suite's receiver cases, against a transmitter running in the test.

Each SET crosses real HTTP into Stanch's push endpoint; each answer is what RFC 8935 says
(202, or 400 with a registered ``err``), and each outcome is in the audit chain.
"""

from __future__ import annotations

from stanch.models import AuditType
from stanch.ssf import events
from tests.ssf.conftest import AUD, Stack, eventually

ALICE = {"format": "email", "email": "alice@example.com"}
BOB_OKTA = {"format": "iss_sub", "iss": "https://okta.example", "sub": "00u1abcd2EFGH3ijk4l5"}


def _refusals(stack: Stack) -> list[str]:
    return [r.data.get("err") for r in stack.records(AuditType.alert_refused)]


async def _refused(stack: Stack, token: str, err: str) -> None:
    resp = await stack.push(token)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["err"] == err and body["description"]
    assert _refusals(stack)[-1] == err


async def test_invalid_sets_are_refused_with_their_code(stack: Stack) -> None:
    f = stack.fake
    ev = events.SESSION_REVOKED
    await _refused(stack, f.set_(ev, ALICE, aud=AUD, corrupt=True), "invalid_key")
    await _refused(stack, f.set_(ev, ALICE, aud=AUD, iss="https://evil.example"),
                   "invalid_issuer")
    await _refused(stack, f.set_(ev, ALICE, aud="https://someone-else"), "invalid_audience")
    await _refused(stack, f.set_(ev, ALICE, aud=AUD, sub="alice"), "invalid_request")
    await _refused(stack, f.set_(ev, ALICE, aud=AUD, exp=9999999999), "invalid_request")
    await _refused(stack, f.set_(ev, ALICE, aud=AUD, iat=1), "invalid_request")
    await _refused(stack, f.set_(ev, ALICE, aud=AUD,
                                 events={ev: {}, events.CREDENTIAL_CHANGE: {}}),
                   "invalid_request")
    await _refused(stack, f.set_("https://example.com/unknown-event", ALICE, aud=AUD),
                   "invalid_request")
    resp = await stack.push(f.set_(ev, ALICE, aud=AUD), ctype="application/json")
    assert resp.status_code == 400 and resp.json()["err"] == "invalid_request"
    resp = await stack.push(f.set_(ev, ALICE, aud=AUD), auth="wrong")
    assert resp.status_code == 401 and resp.json()["err"] == "authentication_failed"
    resp = await stack.push(f.set_(ev, ALICE, aud=AUD), auth=None)
    assert resp.status_code == 401
    assert stack.records(AuditType.alert_received) == []


async def test_unreachable_keys_are_a_temporary_failure(stack: Stack) -> None:
    token = stack.fake.set_(events.SESSION_REVOKED, ALICE, aud=AUD)
    resp = await stack.push(token, name="down", auth=None)
    assert resp.status_code == 503 and resp.json()["err"] == "temporarily_unavailable"
    assert resp.headers["retry-after"]
    # No transmitter under that name: no such receiver endpoint (a 404 problem), not a SET
    # the receiver judged invalid (schemathesis: a schema-valid request answered 400).
    before = len(stack.records(AuditType.alert_refused))
    resp = await stack.push(token, name="nobody")
    assert resp.status_code == 404 and resp.json()["code"] == "unknown_transmitter"
    # Anyone can name any transmitter: counted and audited once a minute in aggregate
    # (stanch/api/refused_webhooks.py), never a record per request.
    assert len(stack.records(AuditType.alert_refused)) == before


async def test_unknown_kid_then_key_rotation(stack: Stack) -> None:
    f = stack.fake
    hidden = f.unpublished_key()
    await _refused(stack, f.set_(events.SESSION_REVOKED, ALICE, aud=AUD, kid=hidden),
                   "invalid_key")
    fetched = f.jwks_fetches  # the first load, and one refetch for the unknown kid
    assert fetched == 2
    await _refused(stack, f.set_(events.SESSION_REVOKED, ALICE, aud=AUD, kid=hidden),
                   "invalid_key")
    assert f.jwks_fetches == fetched  # a kid already refetched for is not fetched again
    new = f.rotate()  # published now: the next SET signed with it makes Stanch refetch
    resp = await stack.push(f.set_(events.SESSION_REVOKED, ALICE, aud=AUD, kid=new))
    assert resp.status_code == 202, resp.text
    assert len(stack.records(AuditType.alert_received)) == 1


async def test_redelivered_set_is_answered_alike_and_contained_once(stack: Stack) -> None:
    f = stack.fake
    token = f.set_(events.CREDENTIAL_COMPROMISE, BOB_OKTA,
                   {"credential_type": "password", "reason_admin": {"en": "breach corpus"}},
                   aud=AUD)
    first, again = await stack.push(token), await stack.push(token)
    assert first.status_code == again.status_code == 202
    received = stack.records(AuditType.alert_received)
    assert len(received) == 1 and received[0].data["source"] == "ssf"
    assert received[0].data["category"] == "leaked_secret"
    plans = stack.records(AuditType.plan_chosen)
    assert len(plans) == 1 and plans[0].data["playbook"] == "shared-signals"
    assert plans[0].subject == "mock:u-alice"  # the Okta user id is Alice's alias
    dup = [r for r in stack.records(AuditType.ssf_event) if "duplicate" in (r.reason or "")]
    assert (len(dup) == 1 and dup[0].data["jti"] in token) or dup
    # The containment saw one alert; the force_reauth the playbook runs happened once.
    await eventually(lambda: [r for r in stack.records(AuditType.action_result)
                              if r.data.get("result", {}).get("action") == "force_reauth"])
    reauth = [r for r in stack.records(AuditType.action_result)
              if r.data.get("result", {}).get("action") == "force_reauth"]
    assert len(reauth) == 1


async def test_stream_creation_verification_and_status(stack: Stack) -> None:
    f = stack.fake
    resp = await stack.api("POST", "/v1/ssf/transmitters/okta/connect")
    assert resp.status_code == 200, resp.text
    stream = resp.json()
    sid = stream["stream_id"]
    assert f.streams[sid]["delivery"]["endpoint_url"] == f"{stack.url}/v1/ssf/push/okta"
    assert (await stack.api("POST", "/v1/ssf/transmitters/okta/verify")).status_code == 200
    state = f.verify_states[-1]
    # verification with the wrong state: refused and audited, the stream stays unverified
    resp = await f.push(sid, f.verification(sid, "not-" + state, AUD))
    assert resp.status_code == 400 and resp.json()["err"] == "invalid_request"
    assert "state" in resp.json()["description"]
    assert _refusals(stack)[-1] == "invalid_request"
    overview = (await stack.api("GET", "/v1/ssf/overview")).json()["receiving"][0]
    assert overview["verified_at"] is None and overview["verification_pending"]
    resp = await f.push(sid, f.verification(sid, state, AUD))
    assert resp.status_code == 202, resp.text
    overview = (await stack.api("GET", "/v1/ssf/overview")).json()["receiving"][0]
    assert overview["verified_at"] and not overview["verification_pending"]
    # verification with the right state about another subject: refused
    assert (await stack.api("POST", "/v1/ssf/transmitters/okta/verify")).status_code == 200
    state = f.verify_states[-1]
    wrong_subject = f.set_(events.VERIFICATION, {"format": "opaque", "id": "another-stream"},
                           {"state": state}, aud=AUD)
    resp = await f.push(sid, wrong_subject)
    assert resp.status_code == 400 and "sub_id" in resp.json()["description"]
    assert (await f.push(sid, f.verification(sid, state, AUD))).status_code == 202
    # unsolicited verification: accepted, recorded, and does not verify anything
    resp = await f.push(sid, f.verification(sid, "never-asked", AUD))
    assert resp.status_code == 202
    assert any("unsolicited" in (r.reason or "") for r in stack.records(AuditType.ssf_event))
    # pause and enable through the transmitter's status endpoint
    resp = await stack.api("POST", "/v1/ssf/transmitters/okta/pause")
    assert resp.json()["status"] == "paused" and f.streams[sid]["status"] == "paused"
    await stack.api("POST", "/v1/ssf/transmitters/okta/enable")
    assert f.streams[sid]["status"] == "enabled"
    # stream-updated from the transmitter is followed
    upd = f.set_(events.STREAM_UPDATED, {"format": "opaque", "id": sid},
                 {"status": "paused", "reason": "maintenance"}, aud=AUD)
    assert (await f.push(sid, upd)).status_code == 202
    overview = (await stack.api("GET", "/v1/ssf/overview")).json()["receiving"][0]
    assert overview["status"] == "paused"
    assert len(stack.records(AuditType.ssf_stream)) >= 4


async def test_expired_access_token_is_refreshed(stack: Stack) -> None:
    f = stack.fake
    assert (await stack.api("POST", "/v1/ssf/transmitters/okta/connect")).status_code == 200
    before = f.token_requests
    f.expire_tokens()  # the token Stanch holds is now refused with 401
    resp = await stack.api("POST", "/v1/ssf/transmitters/okta/verify")
    assert resp.status_code == 200, resp.text
    assert f.token_requests > before and f.verify_states
    assert any(r.reason == "access token refreshed after a 401"
               for r in stack.records(AuditType.ssf_stream))


async def test_issuer_mismatch_at_stream_creation(stack: Stack) -> None:
    f = stack.fake
    f.issuer_override = "https://impostor.example"
    resp = await stack.api("POST", "/v1/ssf/transmitters/okta/connect")
    assert resp.status_code == 502 and "issuer" in resp.json()["detail"]
    assert f.streams == {}
    failed = [r for r in stack.records(AuditType.ssf_stream)
              if r.reason == "transmitter call failed"]
    assert len(failed) == 1 and "impostor" in failed[0].data["error"]
    f.issuer_override = None
    f.stream_iss_override = "https://impostor.example"
    resp = await stack.api("POST", "/v1/ssf/transmitters/okta/connect")
    assert resp.status_code == 502 and "iss" in resp.json()["detail"]
    overview = (await stack.api("GET", "/v1/ssf/overview")).json()["receiving"][0]
    assert overview["stream_id"] is None
    assert len([r for r in stack.records(AuditType.ssf_stream)
                if r.reason == "transmitter call failed"]) == 2
