"""More than one process: two APIs and two workers on one Temporal server and the
PostgreSQL audit store. A storm of alerts across both APIs; one API and one worker killed
with ``kill -9`` mid-way and restarted; then every delivery replayed to the *other* API.

Must hold: 0 lost alerts, 0 duplicate effects at the IdP, one workflow per identity, every
replay refused or deduplicated (nothing starts), the audit chain verifies (``stanch audit
verify``), every action has exactly one intent and one result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from stanch.audit.postgres import PostgresAuditStore, setup_postgres
from stanch.runtime import Child, free_port, http_ok, wait_until
from tests.resilience.stack import (
    REPO,
    SIZE,
    Stack,
    WebhookReceiver,
    check_contained,
    contained,
    report,
    signed,
    sized,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(sized(420, 1800))]

IDENTS = [f"mp-{i:04d}" for i in range(sized(12, 120))]


class TwoOfEach:
    """The resilience stack plus a second API (own port) and a second worker."""

    def __init__(self, stack: Stack, dsn: str, schema: str) -> None:
        self.stack = stack
        stack.env.update({"STANCH_AUDIT__STORE": "postgres",
                          "STANCH_AUDIT__POSTGRES_DSN": dsn,
                          "STANCH_AUDIT__POSTGRES_SCHEMA": schema})
        self.api2_port = free_port()
        self.apis = [stack.api, f"http://127.0.0.1:{self.api2_port}"]
        self.extra: dict[str, Child] = {}
        self.starts: Counter[str] = Counter()

    def start(self) -> None:
        self.stack.start()  # Temporal, mock IdP, worker, API
        self.start_extra("worker-2")
        self.start_extra("api-2")

    def start_extra(self, name: str) -> None:
        self.starts[name] += 1
        env = dict(self.stack.env)
        if name == "api-2":
            env["STANCH_API__PORT"] = str(self.api2_port)
        else:
            env.update(STANCH_METRICS_PORT="0", STANCH_TEMPORAL_METRICS_PORT="0")
        log = self.stack.root / "logs" / f"{name}-{self.starts[name]}.log"
        command = "api" if name == "api-2" else "worker"
        child = Child(name, [sys.executable, "-m", "stanch.cli", command], env, log)
        child.start()
        self.extra[name] = child
        if name == "api-2":
            wait_until(http_ok(f"{self.apis[1]}/readyz"), 60, "the second API", [child])
        else:
            wait_until(lambda: "worker.started" in child.tail(50), 60, "worker 2", [child])

    def kill(self, name: str) -> None:
        child = self.extra.get(name) or self.stack.children[name]
        assert child.proc is not None
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.proc.wait(timeout=10)

    def stop(self) -> None:
        for child in self.extra.values():
            child.stop(grace=5)
        self.stack.stop()


@pytest.fixture()
def two(tmp_path: Path, postgres_dsn: str) -> Iterator[TwoOfEach]:
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    setup_postgres(postgres_dsn, schema, worker_role=None)
    inventory = [{"provider": "mock", "id": i, "kind": "user", "display_name": i,
                  "owner": "alice", "environment": "dev", "criticality": "low",
                  "emails": [f"{i}@chaos.example"]} for i in IDENTS]
    receiver = WebhookReceiver()
    t = TwoOfEach(Stack(tmp_path, inventory, receiver.url), postgres_dsn, schema)
    try:
        t.start()
        yield t
    finally:
        t.stop()
        receiver.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def _body(ident: str) -> bytes:
    return json.dumps({
        "id": f"mp-alert-{ident}", "title": f"{ident} added to prod-admins",
        "category": "privilege_escalation", "severity": "high", "confidence": "high",
        "identities": [{"name": f"{ident}@chaos.example", "type": "upn"}]}).encode()


def _deliver(apis: list[str], first: int, body: bytes,
             deadline: float = 180.0) -> tuple[int, dict[str, Any]]:
    """Like a SIEM behind a load balancer: try one API, fail over to the other on a
    connection error or a 503, until one accepts. Returns (which API accepted, answer)."""
    end = time.monotonic() + deadline
    i = first
    while True:
        headers, query = signed("generic", body)
        try:
            r = httpx.post(f"{apis[i]}/v1/alerts/generic", content=body, headers=headers,
                           params=query, timeout=30)
            if r.status_code == 202:
                return i, dict(r.json())
            if r.status_code != 503:
                raise AssertionError(f"{r.status_code} {r.text}")
        except httpx.TransportError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"not accepted in {deadline:.0f}s: {body[:80]!r}")
        i = 1 - i
        time.sleep(0.3)


def _runs_per_workflow(apis: list[str], token: str) -> Counter[str]:
    r = httpx.get(f"{apis[0]}/v1/containments", params={"limit": 500}, timeout=30,
                  headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return Counter(c["workflow_id"] for c in r.json()["containments"])


def test_two_apis_two_workers_postgres_storm_with_kills(two: TwoOfEach,
                                                        postgres_dsn: str) -> None:
    stack = two.stack
    stack.create_identities(IDENTS)
    t0 = time.monotonic()
    spread = sized(6, 40)
    accepted: dict[str, tuple[int, dict[str, Any]]] = {}
    with ThreadPoolExecutor(8) as ex:
        def storm(n: int, ident: str) -> tuple[str, tuple[int, dict[str, Any]]]:
            time.sleep(spread * n / len(IDENTS))
            return ident, _deliver(two.apis, n % 2, _body(ident))

        futures = [ex.submit(storm, n, ident) for n, ident in enumerate(IDENTS)]
        time.sleep(spread / 2)  # mid-way: one API and one worker die, no shutdown path
        two.kill("api-2")
        two.kill("worker")
        time.sleep(1.0)
        stack.start_worker()
        two.start_extra("api-2")
        accepted = dict(f.result() for f in futures)

    wids = {ident: answer["workflow_id"] for ident, (_, answer) in accepted.items()}
    assert len(set(wids.values())) == len(IDENTS)
    stack.wait_for(wids.values(), contained, timeout=sized(240, 900))

    # Replays: every delivery again, to the API that did not accept it.
    replay_status: Counter[str] = Counter()
    for ident, (i, _) in accepted.items():
        headers, query = signed("generic", _body(ident))
        r = httpx.post(f"{two.apis[1 - i]}/v1/alerts/generic", content=_body(ident),
                       headers=headers, params=query, timeout=30)
        if r.status_code == 202:
            replay_status["deduplicated" if r.json()["deduplicated"] else "NEW"] += 1
        else:
            replay_status[f"refused {r.status_code}"] += 1
    assert replay_status["NEW"] == 0, replay_status
    assert all(k == "deduplicated" or k.startswith("refused 4") for k in replay_status), \
        replay_status

    runs = _runs_per_workflow(two.apis, stack.admin_token)
    assert all(runs[w] == 1 for w in wids.values()), {w: runs[w] for w in wids.values()}

    counts = check_contained(stack, wids,
                             store=PostgresAuditStore(postgres_dsn, schema=stack.env[
                                 "STANCH_AUDIT__POSTGRES_SCHEMA"]))
    env = {**stack.env, "STANCH_CONFIG": str(stack.root / "absent.toml")}
    verify = subprocess.run([sys.executable, "-m", "stanch.cli", "audit", "verify"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and verify.stdout.startswith("ok:"), verify.stderr
    report("2 APIs + 2 workers + PostgreSQL, kill -9 of one API and one worker",
           identities=len(IDENTS), containments=counts["containments"],
           lost_alerts=counts["lost_alerts"], duplicate_effects=counts["duplicate_effects"],
           workflows_per_identity=max(runs[w] for w in wids.values()),
           replays=dict(replay_status), audit_records=counts["audit_records"],
           accepted_by=dict(Counter(f"api-{i + 1}" for i, _ in accepted.values())),
           size=SIZE, seconds=round(time.monotonic() - t0))
