"""One real stack for the contract tests: the API on a socket (uvicorn on a free port), a
worker on the session's Temporal dev server, the mock IdP, an operator token with every
role, a bearer token for the `generic` source and a Slack signing secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings, SourceAuth
from stanch.worker import build_worker
from tests.cli.server import serving

# Fixed, not random: with --import-mode=importlib a test module importing this file gets its
# own copy of the module, and random values would differ from the fixture's.
OPERATOR_TOKEN = "stanch_contract-operator-token-for-tests-only"
SOURCE_TOKEN = "contract-source-token-for-tests-only"
SLACK_SECRET = "contract-slack-signing-secret-for-tests-only"


@dataclass
class ContractStack:
    url: str
    settings: Settings
    store: SqliteAuditStore

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    @property
    def source(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SOURCE_TOKEN}",
                "Content-Type": "application/json"}


async def _terminate_running(client: Client, reason: str) -> None:
    """Containments are one workflow per identity for the whole session: one left running
    by an earlier test sits on a task queue nobody polls any more, and an update sent to it
    (a decision, a joined alert) would wait for a worker forever."""
    async for wf in client.list_workflows("ExecutionStatus = 'Running'"):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate(reason=reason)
        except RPCError:
            pass  # finished meanwhile


@pytest_asyncio.fixture()
async def contract_stack(dev_env: WorkflowEnvironment, settings: Settings, task_queue: str,
                         tmp_path: Path) -> AsyncIterator[ContractStack]:
    settings.temporal.task_queue = task_queue
    settings.api_tokens = [ApiToken(sha256=hash_token(OPERATOR_TOKEN), principal="contract-admin",
                                    roles=["admin"], groups=["secops", "soc-approvers"])]
    settings.sources = {"generic": SourceAuth(mode="bearer",
                                              secrets=[SecretStr(SOURCE_TOKEN)])}
    settings.notify.slack_signing_secret = SecretStr(SLACK_SECRET)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client)
    await _terminate_running(dev_env.client, "contract tests: left by an earlier test")
    try:
        async with build_worker(dev_env.client, settings, store, task_queue=task_queue):
            with serving(app) as url:
                yield ContractStack(url=url, settings=settings, store=store)
        await _terminate_running(dev_env.client, "contract tests: done")
    finally:
        store.close()
