"""The real stack for console tests, in a background thread with its own event loop.

Temporal dev server, a worker, the API (with the console) on a free port, Stanch's mock
IdP and a real OpenID provider (``oidc_provider_mock``). Playwright's sync API drives the
browser from the test thread, which therefore must not be inside an event loop: so the
worker's loop lives here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from oidc_provider_mock import run_server_in_thread
from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, OidcSettings, PrincipalSettings, ProviderSettings, Settings
from stanch.console import mint_login_link
from stanch.mock_idp.testing import start_mock_idp
from stanch.playbook import Playbook, load_playbooks
from stanch.temporal import temporal_cli_path
from stanch.testing import serve_in_thread
from stanch.worker import build_worker
from tests.conftest import SEARCH_ATTRIBUTE_KEYS

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# principal → (roles, groups); all may also sign in with a one-time link.
PEOPLE: dict[str, tuple[list[str], list[str]]] = {
    "oncall": (["responder"], ["secops"]),
    "lead": (["responder", "approver"], ["soc-approvers"]),
    "approver1": (["approver"], ["soc-approvers"]),
    "approver2": (["approver"], ["soc-approvers"]),
    "bob": (["approver"], ["soc-approvers"]),
    "outsider": (["approver"], ["finance-leads"]),
    "watcher": (["viewer"], []),
}
TOKENS = {who: f"tok-console-{who}-0123456789abcdef" for who in PEOPLE}
CLIENT_ID = "stanch-console-test"


@dataclass
class Stack:
    url: str
    mock_idp: str
    issuer: str
    settings: Settings
    loop: asyncio.AbstractEventLoop
    env: WorkflowEnvironment
    extra: dict[str, Any] = field(default_factory=dict)

    def link(self, who: str) -> str:
        return f"{self.url}/ui/login/link?token={mint_login_link(self.settings.state_dir, who)}"

    def api(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30,
                             headers={"Authorization": f"Bearer {TOKENS[who]}"}, **kw)

    def identity(self, ident: str) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.mock_idp}/identities/{ident}",
                                         timeout=10).json()
        return data

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


def _playbooks() -> list[Playbook]:
    """The repository's playbooks, plus a four-eyes-twice one for engineering (Alice)."""
    return [*load_playbooks([REPO / "playbooks"]), *load_playbooks([HERE / "playbooks"])]


def _settings(state: Path, mock_idp: str, issuer: str) -> Settings:
    return Settings(
        state_dir=state, playbooks_dir=REPO / "playbooks", inventory_paths=[REPO / "inventory"],
        providers={"mock": ProviderSettings(type="mock", options={"url": mock_idp})},
        api_tokens=[ApiToken(sha256=hash_token(TOKENS[who]), principal=who, roles=roles,
                             groups=groups) for who, (roles, groups) in PEOPLE.items()],
        principals={"carol": PrincipalSettings(groups=["soc-approvers"])},
        oidc=OidcSettings(issuer=issuer, client_id=CLIENT_ID,
                          client_secret=SecretStr("console-test-secret")),
        _env_file=None,  # type: ignore[call-arg]
    )


@contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    mock_url, stop_mock = start_mock_idp(tmp / "mock-idp")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console-stack", daemon=True)
    thread.start()
    ready: Future[Stack] = Future()
    done = asyncio.Event()

    async def main(issuer: str) -> None:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, dev_server_existing_path=temporal_cli_path(),
            search_attributes=SEARCH_ATTRIBUTE_KEYS)
        settings = _settings(tmp / "state", mock_url, issuer)
        settings.temporal.address = env.client.service_client.config.target_host
        settings.temporal.task_queue = "console-tests"
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteAuditStore(settings.audit_sqlite_path)
        try:
            async with build_worker(env.client, settings, store):
                app = create_app(settings, playbooks=_playbooks())
                url, stop_api = serve_in_thread(app, name="console-api")
                try:
                    ready.set_result(Stack(url, mock_url, issuer, settings, loop, env))
                    await done.wait()
                finally:
                    stop_api()
        except BaseException as err:
            if not ready.done():
                ready.set_exception(err)
            raise
        finally:
            store.close()
            await env.shutdown()

    with run_server_in_thread(require_nonce=True) as oidc_server:
        issuer = f"http://127.0.0.1:{oidc_server.server_port}"
        task = asyncio.run_coroutine_threadsafe(main(issuer), loop)
        try:
            yield ready.result(120)
        finally:
            loop.call_soon_threadsafe(done.set)
            try:
                task.result(60)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
                stop_mock()
