"""The on-call CLI end to end: ``stanch`` subprocesses → the API over a socket → a real worker
on the Temporal dev server → the mock IdP.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings
from stanch.models import containment_workflow_id
from stanch.playbook import Playbook
from stanch.worker import build_worker
from tests.cli.server import serving

REPO = Path(__file__).resolve().parents[2]
BOB_WID = containment_workflow_id("mock", "u-bob")

# principal → (roles, groups)
PEOPLE = {
    "oncall": (["responder"], ["secops"]),
    "approver1": (["approver"], ["soc-approvers"]),
    "outsider": (["approver"], ["finance-leads"]),
    "watcher": (["viewer"], []),
}
TOKENS = {who: f"tok-cli-{who}-0123456789" for who in PEOPLE}


class Driver:
    """One long-lived ``tests.cli.driver`` process; calls are serialized."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lock = asyncio.Lock()

    async def run(self, args: list[str], env: dict[str, str | None]) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps({"args": args, "env": env}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=60)
        if not line:
            raise RuntimeError("the CLI driver process died")
        answer = json.loads(line)
        return answer["code"], answer["stdout"], answer["stderr"]


@pytest_asyncio.fixture(scope="module")
async def driver() -> AsyncIterator[Driver]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cli.driver", cwd=str(REPO), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        yield Driver(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class Stack:
    url: str
    home: Path
    mock_idp: str
    driver: Driver

    async def stanch(self, *args: str, who: str | None = "oncall",
                     url: str | None = None) -> tuple[int, str, str]:
        """Run a CLI command in the driver process; the event loop stays free for the worker."""
        env: dict[str, str | None] = {
            "STANCH_API_URL": url or self.url, "XDG_CONFIG_HOME": str(self.home),
            "STANCH_CONFIG": str(self.home / "absent.toml"), "COLUMNS": "220",
            "NO_COLOR": "1", "TERM": "dumb", "STANCH_TOKEN": TOKENS[who] if who else None}
        return await self.driver.run(list(args), env)

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            resp = await http.get(f"/v1/containments/{BOB_WID}",
                                  headers={"Authorization": f"Bearer {TOKENS['watcher']}"})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def wait(self, pred: Callable[[dict[str, Any]], bool],
                   timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = await self.status()
            except httpx.HTTPStatusError:
                st = {}
            if st and pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached; last status:\n"
                                     f"{json.dumps(st, indent=1)[:4000]}")
            await asyncio.sleep(0.1)


async def _terminate(env: WorkflowEnvironment, wid: str) -> None:
    try:
        await env.client.get_workflow_handle(wid).terminate(reason="test isolation")
    except RPCError:
        pass  # not running: nothing to clean up


@pytest.fixture()
def playbooks() -> list[Playbook] | None:
    """The API's playbooks; None loads the repository's. Overridden by a test below."""
    return None


@pytest_asyncio.fixture()
async def stack(dev_env: WorkflowEnvironment, settings: Settings, task_queue: str,
                mock_idp: str, tmp_path: Path, driver: Driver,
                playbooks: list[Playbook] | None) -> AsyncIterator[Stack]:
    # The workflow id is per identity, so a containment of Bob left by another test on this
    # session's server would otherwise receive our requests on a queue nobody polls.
    await _terminate(dev_env, BOB_WID)
    settings.temporal.task_queue = task_queue
    settings.api_tokens = [ApiToken(sha256=hash_token(TOKENS[who]), principal=who,
                                    roles=roles, groups=groups)
                           for who, (roles, groups) in PEOPLE.items()]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client, playbooks=playbooks)
    home = tmp_path / "home"
    home.mkdir()
    try:
        async with build_worker(dev_env.client, settings, store, task_queue=task_queue):
            with serving(app) as url:
                yield Stack(url=url, home=home, mock_idp=mock_idp, driver=driver)
            await _terminate(dev_env, BOB_WID)
    finally:
        store.close()


def _step(st: dict[str, Any], action: str) -> dict[str, Any]:
    return next(s for s in st["steps"] if s["action"] == action)


def _groups(mock_idp: str) -> set[str]:
    data = httpx.get(f"{mock_idp}/identities/u-bob", timeout=10).json()
    return {g["name"] for g in data["groups"]}


async def test_contain_status_approve_refusals_and_rollback(stack: Stack) -> None:
    code, out, err = await stack.stanch(
        "contain", "bob@example.com", "--level", "rotate", "--reason", "phished on a call",
        "--ticket", "INC-7", "--json")
    assert code == 0, err
    started = json.loads(out)
    assert started["workflow_id"] == BOB_WID and started["identity"] == "mock:u-bob"
    assert started["playbook"] == "manual-containment"

    st = await stack.wait(lambda s: any(x["action"] == "rotate"
                                        and x["status"] == "awaiting_approval"
                                        for x in s["steps"])
                          and _step(s, "force_reauth")["status"] == "applied")
    rotate = _step(st, "rotate")["step_id"]
    assert "payments-approvers" not in _groups(stack.mock_idp)

    shown, raw, as_viewer, as_outsider, unknown_step = await asyncio.gather(
        stack.stanch("status", BOB_WID, who="watcher"),
        stack.stanch("status", BOB_WID, "--json", who="watcher"),
        stack.stanch("approve", BOB_WID, rotate, who="watcher"),
        stack.stanch("approve", BOB_WID, rotate, who="outsider"),
        stack.stanch("deny", BOB_WID, "no-such-step", who="approver1"))
    code, out, err = shown
    assert code == 0, err
    assert "Bob Example (mock:u-bob" in out
    assert "awaiting_approval" in out
    assert rotate in out
    assert "soc-approvers (0/1 approvals)" in out
    assert "Applied actions" in out and "reduce_scope" in out
    assert "rollback cannot restore: sessions" in out  # declared before it ran

    code, out, err = raw
    assert code == 0, err
    machine = json.loads(out)
    assert machine["workflow_id"] == BOB_WID
    assert _step(machine, "rotate")["approval"]["groups"] == ["soc-approvers"]
    assert _step(machine, "force_reauth")["loses"] == ["sessions"]
    assert _step(machine, "rotate")["loses"] == [] and _step(machine, "rotate")["changes"]

    # Refusals: the role check, then the workflow's own checks, each with its reason.
    code, out, err = as_viewer
    assert code == 1
    assert "error: 403 principal 'watcher' lacks the 'approver' role" in err
    code, out, err = as_outsider
    assert code == 1
    assert err.startswith("error: 403 not an approver: outsider")
    code, out, err = unknown_step
    assert code == 1 and "error: 409 unknown step 'no-such-step'" in err

    code, out, err = await stack.stanch("approve", BOB_WID, rotate, "--comment", "confirmed",
                                        who="approver1")
    assert code == 0, err
    assert f"approve recorded on {rotate}" in out and "1/1 approvals" in out
    code, out, err = await stack.stanch("approve", BOB_WID, rotate, who="approver1")
    assert code == 1 and err.startswith("error: 409 not pending")

    st = await stack.wait(lambda s: _step(s, "rotate")["status"] in ("applied", "failed"))
    assert _step(st, "rotate")["status"] == "applied", st

    code, out, err = await stack.stanch("rollback", BOB_WID, "--reason", "caller was real")
    assert code == 0, err
    assert "Rollback of" in out and "reverted" in out
    assert "payments-approvers" in _groups(stack.mock_idp)
    st = await stack.wait(lambda s: s["state"] == "rolled_back")

    # Listed among containments, once visibility has caught up.
    deadline = time.monotonic() + 15
    while True:
        code, out, err = await stack.stanch("status", "--json", who="watcher")
        assert code == 0, err
        listed = {c["workflow_id"]: c for c in json.loads(out)["containments"]}
        if BOB_WID in listed and listed[BOB_WID]["status"] == "rolled_back":
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.5)
    code, out, err = await stack.stanch("status", who="watcher")
    assert code == 0, err
    assert BOB_WID in out and "user" in out and "rolled_back" in out


async def test_deny_resolve_and_refusals_on_a_closed_containment(stack: Stack) -> None:
    code, out, err = await stack.stanch(
        "contain", "mock:u-bob", "--level", "revoke", "--reason", "impossible travel")
    assert code == 0, err
    assert f"containment {BOB_WID} for mock:u-bob" in out
    st = await stack.wait(lambda s: _step(s, "rotate")["status"] == "awaiting_approval"
                          if any(x["action"] == "rotate" for x in s["steps"]) else False)
    rotate = _step(st, "rotate")["step_id"]

    code, out, err = await stack.stanch("deny", BOB_WID, rotate, "--comment", "too much",
                                        who="approver1")
    assert code == 0, err
    assert f"deny recorded on {rotate}: step is denied" in out

    code, out, err = await stack.stanch("confirm", BOB_WID, rotate)
    assert code == 1 and "error: 409 nothing to confirm" in err

    code, out, err = await stack.stanch("resolve", BOB_WID, "--verdict", "true_positive",
                                        "--reason", "confirmed phish", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "resolved"

    # Resolving ends the workflow; later requests are refused as conflicting with that.
    code, out, err = await stack.stanch("rollback", BOB_WID, "--reason", "too late", "--json")
    assert code == 1
    assert json.loads(out)["code"] == "Closed"
    assert err.startswith("error: 409 the workflow has completed")


async def test_bad_input_and_credentials_are_reported(stack: Stack) -> None:
    unknown, bad_level, no_token, bad_id, unreachable = await asyncio.gather(
        stack.stanch("contain", "nobody@example.com", "--level", "revoke", "--reason", "test"),
        stack.stanch("contain", "mock:u-bob", "--level", "nuke", "--reason", "test"),
        stack.stanch("status", BOB_WID, who=None),
        stack.stanch("status", "not-a-containment", who="watcher"),
        stack.stanch("status", url="http://127.0.0.1:9"))
    code, _, err = unknown
    assert code == 1 and "error: 404 unknown identity 'nobody@example.com'" in err
    code, _, err = bad_level
    assert code == 2 and "nuke" in err  # typer refuses before any request
    code, _, err = no_token
    assert code == 1 and "error: 401 missing token" in err and "stanch token create" in err
    code, _, err = bad_id
    assert code == 1 and "error: 404 no such containment" in err
    code, _, err = unreachable
    assert code == 1
    assert "cannot reach the Stanch API at http://127.0.0.1:9" in err and "stanch up" in err


async def test_the_installed_entry_point_reports_an_unreachable_api(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    env.update(STANCH_CONFIG=str(tmp_path / "absent.toml"), XDG_CONFIG_HOME=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stanch.cli", "approve", BOB_WID, "step", "--api",
        "http://127.0.0.1:9", cwd=str(REPO), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 1
    assert err.decode().startswith("error: cannot reach the Stanch API at http://127.0.0.1:9")
    assert out == b""


BREAK_GLASS = Playbook.model_validate({
    "name": "manual-break-glass", "priority": 100, "requested_level": True,
    "match": {"sources": ["manual"], "categories": ["manual"]},
    "ladder": [
        {"action": "reduce_scope", "revert_after": "4h"},
        {"action": "revoke", "break_glass": True,
         "break_glass_reason": "an on-call responder may disable at once",
         "approval": {"groups": ["soc-approvers"], "deadline": "15m"}},
    ],
})


@pytest.mark.parametrize("playbooks", [[BREAK_GLASS]])
async def test_break_glass_review_ack_and_confirm(stack: Stack) -> None:
    code, out, err = await stack.stanch("contain", "mock:u-bob", "--level", "revoke",
                                        "--reason", "active fraud", "--break-glass")
    assert code == 0, err
    st = await stack.wait(lambda s: len(s["steps"]) == 2
                          and all(x["status"] == "applied" for x in s["steps"])
                          and bool(s["reviews"]))
    reduce = _step(st, "reduce_scope")["step_id"]
    review = st["reviews"][0]["review_id"]

    code, out, err = await stack.stanch("status", BOB_WID, who="watcher")
    assert code == 0, err
    assert "Break-glass reviews" in out and review in out and "pending" in out
    assert _step(st, "reduce_scope")["revert_at"][:10] in out

    code, out, err = await stack.stanch("confirm", BOB_WID, reduce, "--reason", "keep it")
    assert code == 0, err
    assert f"confirmed {reduce}: applied, revert at never" in out

    code, out, err = await stack.stanch("review", "ack", BOB_WID, review, "--comment", "fine",
                                        who="oncall")
    assert code == 1 and "error: 403 principal 'oncall' lacks the 'approver' role" in err
    code, out, err = await stack.stanch("review", "ack", BOB_WID, review, "--json",
                                        who="approver1")
    assert code == 0, err
    assert json.loads(out)["acknowledged_by"] == "approver1"
    st = await stack.status()
    assert st["reviews"][0]["acknowledged_by"] == "approver1"
    assert _step(st, "reduce_scope")["revert_at"] is None


async def test_contain_takes_the_inventory_id_or_any_alias(stack: Stack) -> None:
    """On-call types what they know: the inventory's own id works like `provider:id`."""
    code, out, err = await stack.stanch("contain", "u-bob", "--level", "reduce_scope",
                                        "--reason", "bare inventory id", "--json")
    assert code == 0, err
    assert json.loads(out)["identity"] == "mock:u-bob"
    # the dispatcher tells the planner what the provider is, so steps fit it
    assert (await stack.status())["identity"]["provider_type"] == "mock"
    code, out, err = await stack.stanch("contain", "EXAMPLE\\bob", "--level", "reduce_scope",
                                        "--reason", "domain user alias", "--json")
    assert code == 0, err
    assert json.loads(out)["workflow_id"] == BOB_WID
    code, out, err = await stack.stanch("contain", "nobody-at-all", "--level", "revoke",
                                        "--reason", "typo")
    assert code == 1 and "unknown identity 'nobody-at-all'" in err
