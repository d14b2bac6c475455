"""Smaller holes, probed over a real socket: ids with a trailing newline, elevating an
identity nobody owns. Authentication and these checks run before anything reaches Temporal."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.config import ApiToken, Settings
from tests.cli.server import serving

TOKEN = "tok-small-responder-0123456789"


@pytest.fixture()
def url(settings: Settings) -> Iterator[str]:
    settings.temporal.address = "127.0.0.1:1"  # nothing may reach Temporal in these tests
    settings.api_tokens = [ApiToken(sha256=hash_token(TOKEN), principal="oncall",
                                    roles=["responder", "approver"], groups=["secops"])]
    with serving(create_app(settings)) as u:
        yield u


def test_a_workflow_id_with_a_trailing_newline_is_not_an_id(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/v1/containments/containment-0123456789abcdef01234567%0A",
                 "/v1/elevations/elevation-0123456789abcdef01234567%0A"):
        r = httpx.get(url + path, headers=auth, timeout=10)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "ids look like" in r.text
        r = httpx.post(url + path + "/rollback", headers=auth, json={"reason": "newline"},
                       timeout=10)
        assert r.status_code in (404, 405), (path, r.status_code, r.text)


def test_only_inventory_identities_can_be_elevated(url: str) -> None:
    r = httpx.post(f"{url}/v1/elevations", timeout=10,
                   headers={"Authorization": f"Bearer {TOKEN}"},
                   json={"principal": "mock:u-nobody-owns-this", "scopes": ["prod-db"],
                         "duration": "10m", "reason": "configured provider, unknown id"})
    assert r.status_code == 404, r.text
    assert "not in the identity inventory" in r.text
