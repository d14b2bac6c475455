"""Helpers for elevation tests: settings with policies and approvers, a worker, requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from stanch.audit import SqliteAuditStore
from stanch.config import ElevationPolicy, PrincipalSettings, Settings
from stanch.models import IdentityKind, IdentityRef, Principal, Role
from stanch.worker import build_worker
from workflows.elevation import ElevationWorkflow
from workflows.elevation_types import (
    ElevationInput,
    ElevationState,
    ElevationStatus,
    elevation_workflow_id,
    policy_for,
)

BOB = IdentityRef(provider="mock", id="u-bob", kind=IdentityKind.user)
APPROVERS = "soc-approvers"


def configure(settings: Settings, task_queue: str) -> Settings:
    """Policies, a directory of approvers, and ledger ids private to this test."""
    settings.elevation_policies = {
        "prod-*": ElevationPolicy(groups=[APPROVERS], quorum=1, max_duration=timedelta(hours=1),
                                  break_glass_allowed=True),
        "db-admin": ElevationPolicy(groups=["dba-leads"], quorum=2,
                                    max_duration=timedelta(hours=2)),
    }
    settings.elevation_default_policy = ElevationPolicy(groups=[APPROVERS],
                                                        max_duration=timedelta(hours=4))
    settings.principals = {
        "carol": PrincipalSettings(groups=[APPROVERS, "dba-leads"], roles=["approver"]),
        "dave": PrincipalSettings(groups=[APPROVERS, "dba-leads"], roles=["approver"]),
        "alice": PrincipalSettings(groups=["responders"], roles=["responder"]),
        "bob": PrincipalSettings(roles=["responder"], identity_keys=["mock:u-bob"]),
    }
    settings.elevation_ledger_namespace = task_queue
    return settings


def person(pid: str, *groups: str, roles: tuple[Role, ...] = (Role.approver,),
           identity_keys: tuple[str, ...] = ()) -> Principal:
    return Principal(id=pid, groups=list(groups), roles=list(roles),
                     identity_keys=list(identity_keys))


CAROL = person("carol", APPROVERS, "dba-leads")
DAVE = person("dave", APPROVERS, "dba-leads")


def request(settings: Settings, scopes: list[str], duration: timedelta, *,
            requested_by: str = "alice", break_glass: bool = False,
            principal: IdentityRef = BOB) -> ElevationInput:
    return ElevationInput(
        principal=principal, scopes=scopes, duration=duration, reason="incident INC-1",
        ticket="INC-1", requested_by=requested_by, break_glass=break_glass,
        policies={s: policy_for(principal.provider, s, settings.elevation_policies,
                                settings.elevation_default_policy) for s in scopes},
        ledger_namespace=settings.elevation_ledger_namespace)


async def start(client: Client, task_queue: str, inp: ElevationInput
                ) -> WorkflowHandle[Any, ElevationStatus]:
    return await client.start_workflow(
        ElevationWorkflow.run, inp, id=elevation_workflow_id(uuid.uuid4().hex),
        task_queue=task_queue)


async def wait_state(handle: WorkflowHandle[Any, Any], *states: ElevationState,
                     timeout: float = 15.0) -> ElevationStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status: ElevationStatus = await handle.query(ElevationWorkflow.status)
        if status.state in states:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"state {status.state} never became {states}")
        await asyncio.sleep(0.05)


async def wait_pending(handle: WorkflowHandle[Any, Any], kind: str = "grant",
                       timeout: float = 15.0) -> ElevationStatus:
    """Until an approval round of ``kind`` is open for decisions."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status: ElevationStatus = await handle.query(ElevationWorkflow.status)
        if status.pending is not None and status.pending["kind"] == kind:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {kind} round opened (state {status.state})")
        await asyncio.sleep(0.05)


def groups_of(mock_idp: str, identity_id: str = "u-bob") -> set[str]:
    data = httpx.get(f"{mock_idp}/identities/{identity_id}", timeout=5).json()
    return {g["name"] for g in data["groups"]}


def sessions_of(mock_idp: str, identity_id: str = "u-bob") -> list[str]:
    data = httpx.get(f"{mock_idp}/identities/{identity_id}", timeout=5).json()
    return [s["id"] for s in data["sessions"]]


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, task_queue: str
                         ) -> AsyncIterator[SqliteAuditStore]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    try:
        async with build_worker(client, settings, store, task_queue=task_queue):
            yield store
    finally:
        store.close()
