"""MockProvider grant_scope/revoke_scope against a real mock IdP (time-bound elevation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from activities.providers.base import (
    PermanentProviderError,
    ScopeGrantingProvider,
    TransientProviderError,
)
from activities.providers.mock import MockProvider
from stanch.mock_idp.testing import start_mock_idp
from stanch.models import IdentityKind, IdentityRef

BOB = IdentityRef(provider="mock", id="u-bob", kind=IdentityKind.user)
ALICE = IdentityRef(provider="mock", id="u-alice", kind=IdentityKind.user)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_mock_idp(tmp_path_factory.mktemp("mock_idp_scopes"))
    yield url
    stop()


@pytest.fixture
async def provider(idp: str) -> AsyncIterator[MockProvider]:
    httpx.post(f"{idp}/reset").raise_for_status()
    httpx.delete(f"{idp}/faults").raise_for_status()
    p = MockProvider("mock", idp, timeout=5)
    yield p
    await p.aclose()


def groups(idp: str, ident: str) -> dict[str, bool]:
    r = httpx.get(f"{idp}/identities/{ident}")
    r.raise_for_status()
    return {g["name"]: g["privileged"] for g in r.json()["groups"]}


def changes(idp: str, ident: str, key: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{idp}/changes", params={"identity": ident, "idempotency_key": key})
    r.raise_for_status()
    data: list[dict[str, Any]] = r.json()
    return data


def test_mock_is_a_scope_granting_provider() -> None:
    assert isinstance(MockProvider("mock", "http://127.0.0.1:1"), ScopeGrantingProvider)


async def test_grant_then_revoke_roundtrip(provider: MockProvider, idp: str) -> None:
    assert "prod-db" not in groups(idp, BOB.id)
    assert await provider.grant_scope("el-1", BOB, "prod-db") is True
    assert groups(idp, BOB.id)["prod-db"] is True  # privileged membership at the server
    assert [c["op"] for c in changes(idp, BOB.id, "el-1")] == ["group.add"]
    assert await provider.grant_scope("el-2", BOB, "prod-db") is False
    assert changes(idp, BOB.id, "el-2") == []  # a held scope is not written again

    assert await provider.revoke_scope("el-3", BOB, "prod-db") is True
    assert "prod-db" not in groups(idp, BOB.id)
    assert await provider.revoke_scope("el-4", BOB, "prod-db") is False
    assert changes(idp, BOB.id, "el-4") == []
    # the identity's other memberships are untouched
    assert set(groups(idp, BOB.id)) == {"employees", "finance", "payments-approvers"}


async def test_preexisting_membership_is_not_granted(provider: MockProvider, idp: str) -> None:
    assert await provider.grant_scope("el-5", ALICE, "prod-admins") is False
    assert changes(idp, ALICE.id, "el-5") == []
    assert groups(idp, ALICE.id)["prod-admins"] is True


async def test_unknown_identity_is_permanent(provider: MockProvider) -> None:
    ghost = IdentityRef(provider="mock", id="u-nobody", kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError):
        await provider.grant_scope("el-6", ghost, "prod-db")


async def test_rate_limited_write_is_transient(provider: MockProvider, idp: str) -> None:
    httpx.post(f"{idp}/faults", json={"rules": [
        {"methods": ["POST"], "path": "/groups/add$", "status": 429, "retry_after": 3,
         "count": 1}]}).raise_for_status()
    with pytest.raises(TransientProviderError) as err:
        await provider.grant_scope("el-7", BOB, "prod-db")
    assert err.value.retry_after is not None
    assert "prod-db" not in groups(idp, BOB.id)
    assert await provider.grant_scope("el-7", BOB, "prod-db") is True


async def test_holds_scope_reads_a_real_snapshot(provider: MockProvider) -> None:
    assert not provider.holds_scope(await provider.snapshot(BOB), "prod-db")
    await provider.grant_scope("el-8", BOB, "prod-db")
    assert provider.holds_scope(await provider.snapshot(BOB), "prod-db")
    assert provider.holds_scope(await provider.snapshot(ALICE), "prod-admins")
