"""The system under test: ``stanch up``'s four processes on free ports, in a temp state dir.

The Temporal dev server, the mock IdP, the worker and the API are started as child
processes exactly as :func:`stanch.runtime.up` starts them (same argv, same environment
helpers, same readiness checks). Two things differ, both bench fixtures:

* the mock IdP has no API to create identities (only the five seeded demo ones and
  ``/reset``), so its SQLite file is pre-seeded with ``b-NNNNN`` identities before it
  starts — each with a privileged ``prod-admins`` grant a containment can take back;
* the inventory is a generated YAML file (``STANCH_INVENTORY_PATHS``) naming those
  identities plus ``r-NNNNN`` ones that exist only in the inventory (containments that
  wait for approval never reach the provider).

A third process, the floor worker (:mod:`bench.floor`), serves the bare baseline workflow.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stanch.config import Settings
from stanch.mock_idp.store import Store
from stanch.runtime import (
    Child,
    DevCredentials,
    child_env,
    free_port,
    http_ok,
    tcp_open,
    temporal_dev_server_argv,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
SEED_TIME = "2025-01-01T00:00:00+00:00"
FLOOR_QUEUE = "bench-floor"


def contained_id(i: int) -> str:
    """An identity that exists at the mock IdP (alerts on it produce a real write)."""
    return f"b-{i:05d}"


def waiting_id(i: int) -> str:
    """An identity only the inventory knows (for containments parked on approval)."""
    return f"r-{i:05d}"


def upn(identity_id: str) -> str:
    return f"{identity_id}@bench.example"


def seed_mock_idp(db_path: Path, count: int) -> None:
    """Create the mock IdP's schema and demo seed, then add ``count`` bench identities."""
    Store(db_path).seed_if_empty()
    db = sqlite3.connect(db_path)
    with db:
        for i in range(count):
            ident = contained_id(i)
            db.execute("INSERT INTO identities (id, kind, display_name, upn, status)"
                       " VALUES (?, 'user', ?, ?, 'active')", (ident, f"bench {i}", upn(ident)))
            db.executemany("INSERT INTO memberships (identity_id, name, privileged)"
                           " VALUES (?, ?, ?)",
                           [(ident, "employees", 0), (ident, "prod-admins", 1)])
            db.execute("INSERT INTO sessions (id, identity_id, created_at) VALUES (?, ?, ?)",
                       (f"sess-{ident}", ident, SEED_TIME))
            db.execute("INSERT INTO credentials (id, identity_id, type, status, created_at)"
                       " VALUES (?, ?, 'password', 'active', ?)",
                       (f"pwd-{ident}", ident, SEED_TIME))
    db.close()


def write_inventory(path: Path, contained: int, waiting: int) -> None:
    def entry(ident: str) -> dict[str, object]:
        return {"provider": "mock", "id": ident, "kind": "user", "display_name": ident,
                "owner": "bench-owner", "environment": "prod", "criticality": "medium",
                "emails": [upn(ident)]}

    identities = [entry(contained_id(i)) for i in range(contained)]
    identities += [entry(waiting_id(i)) for i in range(waiting)]
    path.write_text(yaml.safe_dump({"identities": identities}, sort_keys=False))


@dataclass
class Stack:
    state: Path
    api: str
    idp: str
    temporal: str
    admin_token: str
    source_token: str
    children: dict[str, Child] = field(default_factory=dict)
    audit_dsn: str | None = None  # the PostgreSQL audit store's, when --audit postgres

    def pid(self, name: str) -> int:
        proc = self.children[name].proc
        assert proc is not None
        return proc.pid

    def stop(self) -> None:
        for name in ("floor", "api", "worker", "mock-idp", "temporal"):
            child = self.children.get(name)
            if child is not None:
                child.stop(grace=10.0)


def start(*, contained: int, waiting: int, state: Path | None = None,
          log: object = print, audit_dsn: str | None = None) -> Stack:
    """Start everything and wait until healthy."""
    state = Path(state or tempfile.mkdtemp(prefix="stanch-bench-")).resolve()
    state.mkdir(parents=True, exist_ok=True)
    ports = {k: free_port() for k in ("temporal", "ui", "api", "idp")}
    inventory = state / "inventory.yaml"
    write_inventory(inventory, contained, waiting)
    seed_mock_idp(state / "mock_idp.db", contained)
    env_in = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    env_in.update({
        "STANCH_STATE_DIR": str(state),
        "STANCH_TEMPORAL__ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "STANCH_TEMPORAL__UI_PORT": str(ports["ui"]),
        "STANCH_API__PORT": str(ports["api"]),
        "STANCH_MOCK_IDP__PORT": str(ports["idp"]),
        "STANCH_INVENTORY_PATHS": json.dumps([str(inventory)]),
        "STANCH_PLAYBOOKS_DIR": str(REPO / "playbooks"),
        "STANCH_PROVIDERS": json.dumps({"mock": {"type": "mock", "options": {
            "url": f"http://127.0.0.1:{ports['idp']}"}}}),
    })
    if audit_dsn is not None:
        env_in.update({"STANCH_AUDIT__STORE": "postgres",
                       "STANCH_AUDIT__POSTGRES_DSN": audit_dsn})
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env_in)
    try:
        settings = Settings()
        creds = DevCredentials.load_or_create(state)
        creds.write_token_files(state)
        env = child_env(settings, creds.env(settings))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    py = sys.executable
    logs = state / "logs"

    def cmd(name: str) -> list[str]:
        return [py, "-m", "stanch.cli", name]

    t_addr = settings.temporal.address
    children = {
        "temporal": Child("temporal", temporal_dev_server_argv(
            settings, db_file=state / "temporal.db"), env, logs / "temporal.log"),
        "mock-idp": Child("mock-idp", [py, "-m", "stanch.cli", "mock-idp"], env,
                          logs / "mock-idp.log"),
        "worker": Child("worker", cmd("worker"), env, logs / "worker.log"),
        "api": Child("api", cmd("api"), env, logs / "api.log"),
        "floor": Child("floor", [py, "-m", "bench.floor", "--address", t_addr,
                                 "--task-queue", FLOOR_QUEUE,
                                 "--evidence-db", str(state / "floor-evidence.db")],
                       env | {"PYTHONPATH": str(REPO)}, logs / "floor.log"),
    }
    stack = Stack(state=state, api=settings.api.url, idp=settings.mock_idp.url,
                  temporal=t_addr, admin_token=creds.admin_token,
                  source_token=creds.source_token, children=children, audit_dsn=audit_dsn)
    order = list(children.values())
    try:
        children["temporal"].start()
        host, _, port = t_addr.rpartition(":")
        wait_until(tcp_open(host, int(port)), 60, "the Temporal dev server", order[:1])
        children["mock-idp"].start()
        wait_until(http_ok(f"{stack.idp}/healthz"), 30, "the mock IdP", order[:2])
        children["worker"].start()
        children["api"].start()
        children["floor"].start()
        wait_until(http_ok(f"{stack.api}/readyz"), 90, "the API and Temporal", order)
        wait_until(lambda: "worker.started" in children["worker"].tail(50), 60,
                   "the worker", order)
        wait_until(lambda: "floor.started" in children["floor"].tail(20), 60,
                   "the floor worker", order)
    except BaseException:
        stack.stop()
        raise
    return stack
