"""The mock IdP from a realistic starting state: contain through every rung, roll back, and
only the declared losses differ (the other identity untouched)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from activities.providers.mock import MockProvider
from stanch.mock_idp.testing import start_mock_idp
from stanch.models import Action, IdentityKind, IdentityRef

from .reversibility import Dump, assert_rollback_exact, flatten


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_mock_idp(tmp_path_factory.mktemp("mock_idp_rev"))
    yield url
    stop()


@pytest.fixture
async def provider(idp: str) -> AsyncIterator[MockProvider]:
    p = MockProvider("mock", idp, timeout=5, inline_retries=0)
    yield p
    await p.aclose()


def _identity(idp: str, name: str, keys: list[str]) -> None:
    groups = [{"name": "admins", "privileged": True}, {"name": "deploy", "privileged": True},
              {"name": "readers", "privileged": False}]
    creds = [{"id": f"pw-{name}", "type": "password"}, {"id": f"mfa-{name}", "type": "mfa"},
             *({"id": k, "type": "api_key"} for k in keys)]
    r = httpx.post(f"{idp}/identities", json={
        "id": name, "display_name": name.title(), "groups": groups,
        "sessions": [f"s1-{name}", f"s2-{name}"], "credentials": creds})
    assert r.status_code == 201, r.text


async def test_every_rung_then_rollback_differs_only_in_declared_losses(
        provider: MockProvider, idp: str) -> None:
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    active, inactive = f"AKIAMOCKA{tag.upper()}01", f"AKIAMOCKA{tag.upper()}02"
    _identity(idp, alice, [active, inactive])
    _identity(idp, bob, [f"AKIAMOCKB{tag.upper()}01"])
    httpx.post(f"{idp}/identities/{alice}/credentials/{inactive}/deactivate").raise_for_status()

    async def dump() -> Dump:
        return flatten({who: httpx.get(f"{idp}/identities/{who}").json()
                        for who in (alice, bob)})

    ref = IdentityRef(provider="mock", id=alice, kind=IdentityKind.user)
    before, after, _ = await assert_rollback_exact(
        "mock", provider, ref, [(Action.reduce_scope, {}), (Action.force_reauth, {}),
                                (Action.rotate, {"credentials": [active]}),
                                (Action.revoke, {})], dump, {
            "sessions": lambda p: p == f"{alice}/sessions",
        }, tag=f"mock-{tag}")
    assert before[f"{bob}/sessions"] == after[f"{bob}/sessions"]


async def test_rotate_at_the_limit_deactivates_and_a_retry_reports_it(
        provider: MockProvider, idp: str) -> None:
    tag = uuid.uuid4().hex[:6]
    name, k1, k2 = f"carol-{tag}", f"AKIAMOCKC{tag.upper()}01", f"AKIAMOCKC{tag.upper()}02"
    _identity(idp, name, [k1, k2])
    ref = IdentityRef(provider="mock", id=name, kind=IdentityKind.user)
    first = await provider.rotate("rot-limit", ref, {"credentials": [k1]})
    assert "limit" in first.message and first.undo is not None
    creds = {c["id"]: c["status"] for c in first.after["credentials"]}
    assert creds[k1] == "inactive" and creds[k2] == "active" and len(creds) == 4
    # a retry whose first result was lost (a fresh adapter) still reports the change
    fresh = MockProvider("mock", idp, timeout=5, inline_retries=0)
    again = await fresh.rotate("rot-limit", ref, {"credentials": [k1]})
    await fresh.aclose()
    assert again.changed and again.undo == first.undo
    assert {c["id"]: c["status"] for c in again.before["credentials"]}[k1] == "active"
    await provider.undo("rot-limit-undo", first)
    state = httpx.get(f"{idp}/identities/{name}").json()
    assert {c["id"]: c["status"] for c in state["credentials"]}[k1] == "active"
