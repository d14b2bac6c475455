"""The whole of Stanch on real processes, for the resilience suite: each part can be killed.

Temporal's dev server keeps its state in a SQLite file under the test's directory, so it
survives a restart; the mock IdP, the worker and the API are ``stanch`` subprocesses on
free ports. Children are started from the main thread only: ``PR_SET_PDEATHSIG`` ties each
to the thread that forked it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from stanch.audit import SqliteAuditStore
from stanch.config import Settings, TemporalSettings
from stanch.ingest.signing import sign
from stanch.models import AuditType
from stanch.runtime import Child, free_port, http_ok, tcp_open, temporal_dev_server_argv, wait_until

REPO = Path(__file__).resolve().parents[2]
SIZE = os.environ.get("STANCH_CHAOS_SIZE", "small")


def sized(small: int, full: int) -> int:
    return full if SIZE == "full" else small


REPORT: list[str] = []


def report(name: str, **counts: Any) -> str:
    line = f"chaos {name} [{SIZE}]: " + ", ".join(f"{k}={v}" for k, v in counts.items())
    REPORT.append(line)
    print(line)
    return line


CHAOS_PLAYBOOK = {
    "name": "chaos-containment",
    "description": "Remove privileged groups, end every session, disable the identity.",
    "match": {"categories": ["privilege_escalation"]},
    "rules": [{"when": {}, "up_to": "revoke"}],
    "ladder": [
        # Every step runs unattended: the playbook accepts what each may lose on any provider.
        {"action": "reduce_scope", "description": "Remove privileged groups.",
         "accept_loss": ["assignment_ids"]},
        {"action": "force_reauth", "description": "End every session.",
         "accept_loss": ["sessions", "leases"]},
        {"action": "revoke", "description": "Disable the identity and its credentials.",
         "accept_loss": ["failed_login_history"]},
    ],
}

# Each identity the suite creates, and the one change per effect containment must make.
GROUPS = [("employees", False), ("prod-admins", True), ("break-glass-admins", True)]
EXPECTED_EFFECTS = Counter({
    ("group.remove", "prod-admins"): 1, ("group.remove", "break-glass-admins"): 1,
    ("sessions.revoke", ""): 1, ("identity.disable", ""): 1,
    ("credential.deactivate", "pwd"): 1, ("credential.deactivate", "key"): 1,
})

# One authentication mode per source, as an operator would configure them.
WHSEC = "whsec_" + base64.b64encode(b"resilience-suite-webhook-key-01").decode()
SOURCE_AUTH: dict[str, dict[str, Any]] = {
    "generic": {"mode": "bearer", "secrets": ["src-generic-token"]},
    "splunk": {"mode": "url_token", "secrets": ["splunk-token"]},
    "elastic": {"mode": "bearer", "secrets": ["kibana-token"]},
    "sentinel": {"mode": "bearer", "secrets": ["logic-app-token"]},
    "crowdstrike": {"mode": "hmac", "secrets": ["falcon-hmac-key"],
                    "timestamp_header": "X-Timestamp"},
    "datadog": {"mode": "bearer", "secrets": ["dd-token"]},
    "guardduty": {"mode": "standard_webhooks", "secrets": [WHSEC]},
    "github": {"mode": "github", "secrets": ["gh-hook-secret"]},
    "ocsf": {"mode": "hmac", "secrets": ["ocsf-key"]},
}


def signed(source: str, body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    conf = SOURCE_AUTH[source]
    req = sign(conf["mode"], body, secret=conf["secrets"][0], now=datetime.now(UTC),
               timestamp_header=conf.get("timestamp_header"))
    return req.headers, req.query


def effect_key(change: dict[str, Any]) -> tuple[str, str]:
    d = change["detail"]
    name = d.get("name") or d.get("credential_id") or ""
    if change["op"] == "credential.deactivate":
        name = name.split("-", 1)[0]  # pwd-<identity> → pwd
    return change["op"], name


class WebhookReceiver:
    """A notify webhook endpoint: records every delivery (type and data)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in list(self.received) if r["type"] == f"stanch.{kind}"]

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class Stack:
    root: Path
    inventory: list[dict[str, Any]]
    webhook_url: str
    ports: dict[str, int] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)
    admin_token: str = field(default_factory=lambda: "stk_" + secrets.token_urlsafe(16))

    # ------------------------------------------------------------------ processes
    def __post_init__(self) -> None:
        self.ports = {k: free_port() for k in ("temporal", "ui", "api", "idp", "metrics",
                                               "sdk_metrics")}
        self.state = self.root / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        (self.root / "playbooks").mkdir(exist_ok=True)
        (self.root / "playbooks" / "chaos.yaml").write_text(yaml.safe_dump(CHAOS_PLAYBOOK))
        demo = yaml.safe_load((REPO / "inventory" / "demo.yaml").read_text())
        inv = {"identities": [*demo["identities"], *self.inventory]}
        (self.root / "inventory.yaml").write_text(yaml.safe_dump(inv))
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        self.idp = f"http://127.0.0.1:{self.ports['idp']}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
        self.env.update({
            "PYTHONUNBUFFERED": "1",
            "STANCH_LOG_FORMAT": "json",
            "STANCH_STATE_DIR": str(self.state),
            "STANCH_TEMPORAL__ADDRESS": f"127.0.0.1:{self.ports['temporal']}",
            "STANCH_TEMPORAL__UI_PORT": str(self.ports["ui"]),
            "STANCH_API__PORT": str(self.ports["api"]),
            "STANCH_MOCK_IDP__PORT": str(self.ports["idp"]),
            "STANCH_PLAYBOOKS_DIR": str(self.root / "playbooks"),
            "STANCH_INVENTORY_PATHS": json.dumps([str(self.root / "inventory.yaml")]),
            "STANCH_PROVIDERS": json.dumps({"mock": {"type": "mock", "options": {
                "url": self.idp}}}),
            "STANCH_SOURCES": json.dumps(SOURCE_AUTH),
            "STANCH_API_TOKENS": json.dumps([{
                "sha256": hashlib.sha256(self.admin_token.encode()).hexdigest(),
                "principal": "chaos-admin", "groups": ["soc-approvers"], "roles": ["admin"]}]),
            "STANCH_NOTIFY__WEBHOOK_URL": self.webhook_url,
            "STANCH_NOTIFY__WEBHOOK_SECRET": WHSEC,
            "STANCH_METRICS_PORT": str(self.ports["metrics"]),
            "STANCH_TEMPORAL_METRICS_PORT": str(self.ports["sdk_metrics"]),
        })
        settings = Settings(_env_file=None,  # type: ignore[call-arg]
                            temporal=TemporalSettings(address=f"127.0.0.1:{self.ports['temporal']}"))
        self._temporal_argv = temporal_dev_server_argv(
            settings, db_file=self.root / "temporal.db", ui_port=self.ports["ui"])

    def _child(self, name: str, argv: list[str]) -> Child:
        self.starts[name] += 1
        log = self.root / "logs" / f"{name}-{self.starts[name]}.log"
        child = Child(name, argv, self.env, log)
        child.start()
        self.children[name] = child
        return child

    def _stanch(self, name: str, command: str) -> Child:
        return self._child(name, [sys.executable, "-m", "stanch.cli", command])

    def start(self) -> None:
        self.start_temporal()
        self._stanch("mock-idp", "mock-idp")
        wait_until(http_ok(f"{self.idp}/healthz"), 30, "the mock IdP",
                   [self.children["mock-idp"]])
        self.start_worker()
        self._stanch("api", "api")
        wait_until(http_ok(f"{self.api}/readyz"), 60, "the API", [self.children["api"]])

    def start_temporal(self) -> None:
        t = self._child("temporal", self._temporal_argv)
        wait_until(tcp_open("127.0.0.1", self.ports["temporal"]), 60, "Temporal", [t])

    def stop_temporal(self) -> None:
        self.children["temporal"].stop(grace=20)

    def start_worker(self, wait: bool = True) -> None:
        w = self._stanch("worker", "worker")
        if wait:
            wait_until(lambda: "worker.started" in w.tail(50), 60, "the worker", [w])

    def kill_worker(self) -> None:
        """kill -9, the whole process group: no shutdown path runs."""
        w = self.children["worker"]
        assert w.proc is not None
        try:
            os.killpg(w.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        w.proc.wait(timeout=10)

    def stop(self) -> None:
        for name in ("api", "worker", "mock-idp", "temporal"):
            if name in self.children:
                self.children[name].stop(grace=5)

    # ------------------------------------------------------------------ mock IdP
    def create_identities(self, ids: Iterable[str]) -> None:
        with httpx.Client(base_url=self.idp, timeout=10) as c:
            for ident in ids:
                r = c.post("/identities", json={
                    "id": ident, "kind": "user", "upn": f"{ident}@chaos.example",
                    "groups": [{"name": n, "privileged": p} for n, p in GROUPS],
                    "sessions": [f"sess-{ident}-1", f"sess-{ident}-2"],
                    "credentials": [{"id": f"pwd-{ident}", "type": "password"},
                                    {"id": f"key-{ident}", "type": "api_key"}]})
                assert r.status_code == 201, r.text

    def faults(self, rule: dict[str, Any] | None) -> dict[str, Any]:
        if rule is None:
            httpx.delete(f"{self.idp}/faults", timeout=10).raise_for_status()
            return {}
        r = httpx.post(f"{self.idp}/faults", json=rule, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def changes(self, identity: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.idp}/changes", params={"identity": identity}, timeout=10)
        r.raise_for_status()
        return list(r.json())

    def duplicate_effects(self, identity: str) -> int:
        """Changes beyond one per expected effect (0 when containment acted exactly once)."""
        seen = Counter(effect_key(c) for c in self.changes(identity))
        return sum((seen - EXPECTED_EFFECTS).values())

    # ------------------------------------------------------------------ API
    def post_alert(self, identity: str, key: str, *, deadline: float = 120.0) -> dict[str, Any]:
        """Deliver like a SIEM: retry on 503 and on connection errors until accepted."""
        body = json.dumps({
            "id": key, "title": f"{identity} added to prod-admins",
            "category": "privilege_escalation", "severity": "high", "confidence": "high",
            "identities": [{"name": f"{identity}@chaos.example", "type": "upn"}],
        }).encode()
        headers, query = signed("generic", body)
        end = time.monotonic() + deadline
        while True:
            try:
                r = httpx.post(f"{self.api}/v1/alerts/generic", content=body, headers=headers,
                               params=query, timeout=30)
                if r.status_code == 202:
                    return dict(r.json())
                if r.status_code != 503:
                    raise AssertionError(f"alert for {identity}: {r.status_code} {r.text}")
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise AssertionError(f"alert for {identity} not accepted in {deadline:.0f}s")
            time.sleep(0.5)

    def containment(self, wid: str) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.api}/v1/containments/{wid}", timeout=15,
                          headers={"Authorization": f"Bearer {self.admin_token}"})
        except httpx.TransportError:
            return None
        return dict(r.json()) if r.status_code == 200 else None

    def wait_for(self, wids: Iterable[str], done: Callable[[dict[str, Any]], bool],
                 timeout: float, between: Callable[[], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
        pending = set(wids)
        states: dict[str, dict[str, Any]] = {}
        end = time.monotonic() + timeout
        while pending and time.monotonic() < end:
            for wid in sorted(pending):
                st = self.containment(wid)
                if st is not None and done(st):
                    states[wid] = st
                    pending.discard(wid)
            if pending:
                if between is not None:
                    between()
                time.sleep(0.5)
        return states

    # ------------------------------------------------------------------ audit
    def audit(self) -> SqliteAuditStore:
        return SqliteAuditStore(self.state / "audit.db")

    def audit_phases(self, store: Any, wid: str) -> dict[str, Counter[str]]:
        """action_id → how many records of each phase (intent, result) it has."""
        out: dict[str, Counter[str]] = {}
        types = [AuditType.action_intent, AuditType.action_result, AuditType.action_failed]
        for rec in store.query(workflow_id=wid, types=types, limit=10_000):
            assert rec.action_id is not None
            out.setdefault(rec.action_id, Counter())[rec.phase or "?"] += 1
        return out


def contained(st: dict[str, Any]) -> bool:
    return st.get("state") == "contained" and len(st.get("steps", [])) == 3


def check_contained(stack: Stack, idents: dict[str, str],
                    store: Any = None) -> dict[str, int]:
    """Every identity contained once: state, effects, audit. Returns the report's counts.
    ``store``: the audit store to check (default: the stack's SQLite file); it is closed."""
    states = stack.wait_for(idents.values(), contained, timeout=5)
    lost = [i for i, wid in idents.items() if wid not in states]
    duplicates = 0
    wrong: list[str] = []
    store = store if store is not None else stack.audit()
    try:
        for ident, wid in idents.items():
            duplicates += stack.duplicate_effects(ident)
            seen = Counter(effect_key(c) for c in stack.changes(ident))
            if seen != EXPECTED_EFFECTS:
                wrong.append(f"{ident}: effects {dict(seen)}")
            st = states.get(wid)
            if st is None:
                continue
            for step in st["steps"]:
                result = step.get("result") or {}
                if step["status"] != "applied" or result.get("status") != "applied":
                    wrong.append(f"{ident}: step {step['step_id']} {step['status']} "
                                 f"({result.get('status')})")
                if step["action"] != "force_reauth" and not step.get("undo"):
                    wrong.append(f"{ident}: step {step['step_id']} has no undo")
            for action_id, phases in stack.audit_phases(store, wid).items():
                if phases != Counter({"intent": 1, "result": 1}):
                    wrong.append(f"{ident}: {action_id} audit phases {dict(phases)}")
        verify = store.verify()
        doubts = store.doubts()
    finally:
        store.close()
    assert verify.ok, verify
    assert not doubts, [d.model_dump() for d in doubts[:5]]
    assert not lost, f"not contained: {lost[:10]}"
    assert not wrong, wrong[:20]
    assert duplicates == 0
    return {"containments": len(states), "duplicate_effects": duplicates,
            "lost_alerts": len(lost), "audit_records": verify.records}
