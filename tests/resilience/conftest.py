"""One real stack for the resilience suite; every test creates its own identities on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.resilience.stack import REPORT, SIZE, Stack, WebhookReceiver, sized

# Identity prefixes and how many of each the tests use (the API's inventory knows them all).
POOLS = {"kill": sized(20, 200), "srv": sized(10, 100), "flt": sized(6, 60), "deny": 1,
         "crash": 1}


def pool(prefix: str) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(POOLS[prefix])]


def _inventory() -> list[dict[str, Any]]:
    return [{"provider": "mock", "id": ident, "kind": "user", "display_name": ident,
             "owner": "alice", "environment": "dev", "criticality": "low",
             "emails": [f"{ident}@chaos.example"]}
            for prefix in POOLS for ident in pool(prefix)]


@pytest.fixture(scope="session")
def webhooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory,
          webhooks: WebhookReceiver) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("chaos"), _inventory(), webhooks.url)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section(f"resilience report (STANCH_CHAOS_SIZE={SIZE})")
        for line in REPORT:
            terminalreporter.write_line(line)
