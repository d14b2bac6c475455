"""One real mock IdP per session (uvicorn on a free port); each test starts from the seed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stanch.mock_idp.testing import start_mock_idp


@pytest.fixture(scope="session")
def mock_idp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_mock_idp(tmp_path_factory.mktemp("mock_idp"))
    yield url
    stop()


@pytest.fixture
def mock_idp_url(mock_idp_server: str) -> str:
    httpx.post(f"{mock_idp_server}/reset").raise_for_status()
    return mock_idp_server


@pytest.fixture
def idp(mock_idp_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_idp_url, timeout=10) as client:
        yield client
