"""MockProvider against a real mock IdP: the conformance suite, then mock-specific checks."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog

from activities.providers.base import (
    FRESH_SNAPSHOT,
    IdentityProvider,
    PermanentProviderError,
    TransientProviderError,
    apply,
)
from activities.providers.mock import MockProvider
from activities.providers.registry import build_provider
from stanch.config import ProviderSettings, Settings
from stanch.mock_idp.testing import start_mock_idp
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance, assert_same_fields

ALICE = IdentityRef(provider="mock", id="u-alice", kind=IdentityKind.user)
BOB = IdentityRef(provider="mock", id="u-bob", kind=IdentityKind.user)
DEPLOY = IdentityRef(provider="mock", id="sa-deploy", kind=IdentityKind.service_account)
CASES = {Action.reduce_scope: ALICE, Action.force_reauth: ALICE, Action.rotate: DEPLOY,
         Action.revoke: BOB}


@pytest.fixture(scope="module")
def mock_idp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_mock_idp(tmp_path_factory.mktemp("mock_idp"))
    yield url
    stop()


@pytest.fixture
def mock_idp_url(mock_idp_server: str) -> str:
    httpx.post(f"{mock_idp_server}/reset").raise_for_status()
    return mock_idp_server


class _SecretSpy(httpx.AsyncBaseTransport):
    """Real transport that remembers every secret the IdP hands out."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.secrets: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/credentials/rotate"):
            body = await resp.aread()
            secret = json.loads(body).get("secret")
            if secret:
                self.secrets.append(secret)
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def spy_provider(mock_idp_url: str) -> AsyncIterator[tuple[MockProvider, _SecretSpy]]:
    spy = _SecretSpy()
    provider = MockProvider("mock", mock_idp_url, timeout=5, transport=spy,
                            inline_retries=0)
    yield provider, spy
    await provider.aclose()


class TestMockConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.force_reauth})

    @pytest.fixture
    async def target(self, mock_idp_url: str,
                     spy_provider: tuple[MockProvider, _SecretSpy]
                     ) -> AsyncIterator[ConformanceTarget]:
        provider, spy = spy_provider

        async def prepare(action: Action) -> Case:
            # each case starts from the seed (a test may prepare several)
            httpx.post(f"{mock_idp_url}/reset", timeout=10).raise_for_status()
            return Case(CASES[action])

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            httpx.post(f"{mock_idp_url}/faults",
                       json={"status": 429, "retry_after": 2, "count": 1}).raise_for_status()
            try:
                yield provider
            finally:
                httpx.delete(f"{mock_idp_url}/faults").raise_for_status()

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                fault_retry_after=2, secrets=lambda: list(spy.secrets))


# ----------------------------------------------------------------------------- helpers


def _changes(url: str, **params: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{url}/changes", params=params).json()
    return data


async def _round_trip(provider: MockProvider, url: str, ref: IdentityRef, action: Action,
                      params: dict[str, Any]) -> tuple[Any, Any]:
    before = await provider.snapshot(ref)
    applied = await getattr(provider, action.value)(f"act-{action.value}", ref, params)
    assert applied.status is ActionStatus.applied and applied.changed
    assert applied.before == before
    assert applied.after == await provider.snapshot(ref)
    undone = await provider.undo(f"undo-{action.value}", applied)
    assert undone.status is ActionStatus.undone and undone.changed
    assert_same_fields(before, await provider.snapshot(ref))
    return applied, undone


# ----------------------------------------------------------------------------- actions


async def test_reduce_scope_removes_privileged_groups_and_undo_restores(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    applied, _ = await _round_trip(provider, mock_idp_url, ALICE, Action.reduce_scope, {})
    assert applied.undo is not None
    assert applied.undo.params["groups"] == [
        {"name": "break-glass-admins", "privileged": True},
        {"name": "prod-admins", "privileged": True}]
    assert {g["name"] for g in applied.after["groups"]} == {"employees", "engineering"}
    removed = _changes(mock_idp_url, idempotency_key="act-reduce_scope")
    assert sorted(c["detail"]["name"] for c in removed) == ["break-glass-admins",
                                                            "prod-admins"]
    assert [c["op"] for c in _changes(mock_idp_url, idempotency_key="undo-reduce_scope")] == [
        "group.add", "group.add"]


async def test_reduce_scope_with_explicit_groups(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    result = await provider.reduce_scope("explicit", BOB, {"groups": ["finance", "absent"]})
    assert result.undo is not None
    assert result.undo.params["groups"] == [{"name": "finance", "privileged": False}]
    assert "payments-approvers" in {g["name"] for g in result.after["groups"]}
    with pytest.raises(PermanentProviderError):
        await provider.reduce_scope("bad", BOB, {"groups": "finance"})


async def test_force_reauth_is_irreversible(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    result = await provider.force_reauth("fr", ALICE, {})
    assert result.irreversible and result.undo is None
    assert [s["id"] for s in result.before["sessions"]] == ["sess-alice-0001",
                                                            "sess-alice-0002"]
    assert result.after["sessions"] == []
    with pytest.raises(PermanentProviderError) as err:
        await provider.undo("fr-undo", result)
    assert err.value.code == "Irreversible"


async def test_rotate_never_leaks_the_secret_and_undo_restores(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, spy = spy_provider
    with structlog.testing.capture_logs() as logs:
        applied, undone = await _round_trip(provider, mock_idp_url, DEPLOY, Action.rotate, {})
    assert len(spy.secrets) == 1
    for text in (applied.model_dump_json(), undone.model_dump_json(), repr(logs)):
        assert spy.secrets[0] not in text
    assert applied.undo is not None
    new_id = applied.undo.params["new_credential_id"]
    assert applied.undo.params["reactivate"] == ["AKIAMOCKDEPLOY0001"]
    assert {c["id"]: c["status"] for c in applied.after["credentials"]} == {
        "AKIAMOCKDEPLOY0001": "inactive", new_id: "active"}
    # the undo freed the slot: rotating again does not meet LimitExceeded
    again = await provider.rotate("rotate-again", DEPLOY, {})
    assert again.status is ActionStatus.applied


async def test_rotate_by_type_and_rotation_limit(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    mfa = await provider.rotate("rot-mfa", ALICE, {"credential_type": "mfa"})
    assert mfa.undo is not None and mfa.undo.params["reactivate"] == ["mfa-alice-0001"]
    first = await provider.rotate("rot-1", DEPLOY, {})
    assert first.changed
    # at the limit: the active key is only deactivated, nothing is deleted
    second = await provider.rotate("rot-2", DEPLOY, {})
    assert "limit" in second.message
    assert {c["status"] for c in second.after["credentials"] if c["type"] == "api_key"} == {
        "inactive"}
    old = first.undo.params["old_credential_id"] if first.undo else ""
    with pytest.raises(PermanentProviderError) as err:
        await provider.rotate("rot-3", DEPLOY, {"credential_id": old})
    assert err.value.code == "LimitExceeded" and "never deletes" in str(err.value)
    assert not err.value.retryable


async def test_revoke_then_undo_reactivates_exactly_what_was_active(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    httpx.post(f"{mock_idp_url}/identities/u-alice/credentials/mfa-alice-0001/deactivate"
               ).raise_for_status()
    applied, _ = await _round_trip(provider, mock_idp_url, ALICE, Action.revoke, {})
    assert applied.undo is not None
    assert applied.undo.params == {"enable": True, "reactivate": ["pwd-alice-0001"]}
    assert applied.after["status"] == "disabled"
    creds = {c["id"]: c["status"] for c in (await provider.snapshot(ALICE))["credentials"]}
    assert creds == {"mfa-alice-0001": "inactive", "pwd-alice-0001": "active"}


async def test_repeat_records_no_second_change(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    for action, ref in CASES.items():
        first = await getattr(provider, action.value)(f"twice-{action.value}", ref, {})
        count = len(_changes(mock_idp_url, idempotency_key=f"twice-{action.value}"))
        second = await getattr(provider, action.value)(f"twice-{action.value}", ref, {})
        assert first.changed and not second.changed, action
        assert second.status is ActionStatus.already
        assert len(_changes(mock_idp_url, idempotency_key=f"twice-{action.value}")) == count
        # a repeat from another worker sees the lost-result case and still reports the undo
        other = MockProvider("mock", mock_idp_url)
        recovered = await getattr(other, action.value)(f"twice-{action.value}", ref, {})
        await other.aclose()
        assert recovered.status is ActionStatus.applied and recovered.undo == first.undo
        assert recovered.before == first.before
        assert len(_changes(mock_idp_url, idempotency_key=f"twice-{action.value}")) == count


async def test_write_that_timed_out_is_recovered_on_retry(
        mock_idp_url: str) -> None:
    """The write lands after the client gave up; the retry reports it with its undo."""
    provider = MockProvider("mock", mock_idp_url, timeout=0.3, inline_retries=0)
    before = await provider.snapshot(ALICE)
    httpx.post(f"{mock_idp_url}/faults", json={"latency_ms": 600, "count": 1,
                                               "path": "groups/remove"}).raise_for_status()
    with pytest.raises(TransientProviderError) as err:
        await provider.reduce_scope("slow", ALICE, {})
    assert err.value.code == "Timeout"
    await asyncio.sleep(0.5)
    result = await provider.reduce_scope("slow", ALICE, {})
    assert result.status is ActionStatus.applied and result.before == before
    assert result.undo is not None and len(result.undo.params["groups"]) == 2
    assert len(_changes(mock_idp_url, idempotency_key="slow")) == 2
    await provider.undo("slow-undo", result)
    assert_same_fields(before, await provider.snapshot(ALICE))
    await provider.aclose()


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "kind"), [
    (429, TransientProviderError), (500, TransientProviderError),
    (503, TransientProviderError), (403, PermanentProviderError),
    (401, PermanentProviderError), (400, PermanentProviderError),
])
async def test_status_mapping(mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy],
                              status: int, kind: type[Exception]) -> None:
    provider, _ = spy_provider
    httpx.post(f"{mock_idp_url}/faults",
               json={"status": status, "retry_after": 3, "count": 1,
                     "path": "groups/remove"}).raise_for_status()
    with pytest.raises(kind) as caught:
        await provider.reduce_scope(f"err-{status}", ALICE, {})
    err = caught.value
    assert isinstance(err, TransientProviderError | PermanentProviderError)
    assert err.status == status
    if status in (429, 503, 500):
        assert err.retry_after == 3
    assert _changes(mock_idp_url) == []  # the faulted write changed nothing


async def test_unknown_identity_is_permanent(
        mock_idp_url: str, spy_provider: tuple[MockProvider, _SecretSpy]) -> None:
    provider, _ = spy_provider
    ghost = IdentityRef(provider="mock", id="u-ghost", kind=IdentityKind.user)
    for call in (provider.snapshot(ghost), provider.revoke("g", ghost, {})):
        with pytest.raises(PermanentProviderError) as caught:
            await call
        assert caught.value.status == 404 and caught.value.code == "NoSuchEntity"


async def test_connection_refused_and_timeout_are_transient(mock_idp_url: str) -> None:
    # Hold the port bound but not listening: nothing else on this machine (other suites
    # start servers on free ports too) can take it while we connect.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        down = MockProvider("mock", f"http://127.0.0.1:{held.getsockname()[1]}", timeout=1,
                            inline_retries=0)
        with pytest.raises(TransientProviderError) as caught:
            await down.snapshot(ALICE)
        assert caught.value.code == "ConnectionError"
        await down.aclose()
    slow = MockProvider("mock", mock_idp_url, timeout=0.2, inline_retries=0)
    httpx.post(f"{mock_idp_url}/faults", json={"latency_ms": 500, "count": 1,
                                               "path": "^/identities/u-alice$"}
               ).raise_for_status()
    with pytest.raises(TransientProviderError) as caught:
        await slow.snapshot(ALICE)
    assert caught.value.code == "Timeout"
    await slow.aclose()


# ----------------------------------------------------------------------------- settings


async def test_built_from_settings(mock_idp_url: str) -> None:
    settings = Settings(providers={"mock": ProviderSettings(
        type="mock", options={"url": mock_idp_url, "timeout": 2.5})})
    provider = build_provider("mock", settings)
    assert isinstance(provider, MockProvider) and provider.base_url == mock_idp_url
    assert (await provider.snapshot(ALICE))["id"] == "u-alice"
    await provider.aclose()
    default = MockProvider.from_settings("mock", ProviderSettings(type="mock"), Settings())
    assert default.base_url == "http://127.0.0.1:8090"
    await default.aclose()


async def test_inline_retries_ride_out_a_brief_rate_limit(mock_idp_url: str) -> None:
    """One 429 with a short Retry-After is retried in place: the action still applies once."""
    httpx.post(f"{mock_idp_url}/reset").raise_for_status()
    provider = MockProvider("mock", mock_idp_url, timeout=5, inline_retries=2)
    httpx.post(f"{mock_idp_url}/faults", json={"status": 429, "retry_after": 0.2, "count": 2,
                                              "error_rate": 1.0}).raise_for_status()
    try:
        result = await provider.reduce_scope("act-inline-1", ALICE, {})
    finally:
        httpx.delete(f"{mock_idp_url}/faults").raise_for_status()
        await provider.aclose()
    assert result.changed
    changes = httpx.get(f"{mock_idp_url}/changes",
                        params={"idempotency_key": "act-inline-1"}).json()
    assert len(changes) == len({c["detail"]["name"] for c in changes}) >= 1


class _Counter(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("action", list(CASES))
async def test_first_attempt_plans_from_the_fresh_snapshot_and_verifies_from_the_write(
        mock_idp_url: str, action: Action) -> None:
    """With the activity's just-taken snapshot (first attempt), an action makes its writes
    and nothing else, and its result equals the one planned from fresh reads."""
    ident = CASES[action]
    counter = _Counter()
    provider = MockProvider("mock", mock_idp_url, timeout=5, transport=counter)
    try:
        snapshot = await provider.snapshot(ident)
        counter.calls.clear()
        fresh = await apply(provider, action, f"fresh-{action.value}", ident,
                            {FRESH_SNAPSHOT: snapshot})
        assert counter.calls and all(c.startswith("POST ") for c in counter.calls), counter.calls
        httpx.post(f"{mock_idp_url}/reset").raise_for_status()
        read = await apply(provider, action, f"read-{action.value}", ident, {})
    finally:
        await provider.aclose()
    assert fresh.status is read.status is ActionStatus.applied
    same = ("changed", "before", "irreversible")
    assert {k: getattr(fresh, k) for k in same} == {k: getattr(read, k) for k in same}
    if action is not Action.rotate:  # a rotation issues a new credential id each time
        assert fresh.after == read.after and fresh.undo == read.undo
