"""``stanch up``: the embedded runtime — Temporal dev server, worker, API and mock IdP.

Each part is a child process started in its own session (so a terminal's Ctrl-C reaches
only us) and asked by the kernel to die with us (``PR_SET_PDEATHSIG``), so nothing is left
orphaned even if ``stanch up`` itself is killed. Shutdown is in reverse start order:
SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stanch.config import Settings
from stanch.statedir import make_private
from stanch.temporal import SEARCH_ATTRIBUTES, temporal_cli_path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's shutdown path still stops every child


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.proc.wait(timeout=5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_dev_server_argv(settings: Settings, *, db_file: Path | None,
                             port: int | None = None, ui_port: int | None = None) -> list[str]:
    host, _, p = settings.temporal.address.rpartition(":")
    argv = [
        temporal_cli_path(settings), "server", "start-dev",
        "--ip", host, "--port", str(port or int(p)),
        "--ui-port", str(ui_port if ui_port is not None else settings.temporal.ui_port),
        "--namespace", settings.temporal.namespace,
        "--log-level", "warn",
    ]
    if db_file is not None:
        # Write-ahead log, fsync at checkpoints: the state survives a killed server (the
        # resilience suite restarts it mid-flight), and it doubles what the server can take
        # on this machine (floor throughput 20 -> 37 wf/s, docs/benchmarks.md). A power cut
        # may lose the last commits; this is the embedded dev server, not a production one.
        argv += ["--db-filename", str(db_file),
                 "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    return argv


# The history service reads its task queues from the database at most N times a second per
# shard (default 20). A new workflow's first task waits for that read: on the dev server it
# was 22-40 ms of every time-to-contain, paid alike by the bench's floor (docs/benchmarks.md).
# Lifting the cap costs a read per new task when the server is idle and nothing under load
# (a read then takes a batch).
DEV_SERVER_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
}


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               children: Sequence[Child] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for c in children:
            if c.proc is not None and c.proc.poll() is not None:
                raise RuntimeError(f"{c.name} exited (code {c.proc.returncode}) while waiting "
                                   f"for {what}; its log ({c.log_path}):\n{c.tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    return check


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    return check


@dataclass
class DevCredentials:
    """Local-only credentials `stanch up` makes on first run, kept under state_dir (0600):
    an admin API token, a webhook token for every source, the audit checkpoint key."""

    admin_token: str
    source_token: str
    path: Path
    checkpoint_key: str = field(default_factory=lambda: "ck_" + secrets.token_urlsafe(32))

    @classmethod
    def load_or_create(cls, state_dir: Path) -> DevCredentials:
        path = state_dir / "dev-credentials.json"
        if path.exists():
            data = json.loads(path.read_text())
            creds = cls(data["admin_token"], data["source_token"], path)
            if data.get("checkpoint_key"):
                creds.checkpoint_key = data["checkpoint_key"]
            else:
                creds._save()  # made by an older `stanch up`: add the key once
            return creds
        state_dir.mkdir(parents=True, exist_ok=True)
        creds = cls("stk_" + secrets.token_urlsafe(24), "src_" + secrets.token_urlsafe(24), path)
        creds._save()
        return creds

    def _save(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"admin_token": self.admin_token, "source_token": self.source_token,
                       "checkpoint_key": self.checkpoint_key}, f)

    def in_effect(self, settings: Settings) -> set[str]:
        """The token files that work: those the configuration did not override."""
        names = set()
        if not settings.api_tokens and "STANCH_API_TOKENS" not in os.environ:
            names.add("dev-token")
        if not settings.sources and "STANCH_SOURCES" not in os.environ:
            names.add("source-token")
        if settings.audit.checkpoint_key is None and \
                "STANCH_AUDIT__CHECKPOINT_KEY" not in os.environ:
            names.add("checkpoint-key")
        return names

    def write_token_files(self, state_dir: Path, names: set[str] | None = None) -> None:
        """Write the files in ``names`` (default: all); remove the others, stale since the
        configuration overrode them."""
        for name, value in (("dev-token", self.admin_token), ("source-token", self.source_token),
                            ("checkpoint-key", self.checkpoint_key)):
            if names is not None and name not in names:
                (state_dir / name).unlink(missing_ok=True)
                continue
            fd = os.open(state_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)

    def env(self, settings: Settings) -> dict[str, str]:
        """Settings the children need unless the user configured their own."""
        import hashlib

        out: dict[str, str] = {}
        if not settings.api_tokens and "STANCH_API_TOKENS" not in os.environ:
            out["STANCH_API_TOKENS"] = json.dumps([{
                "sha256": hashlib.sha256(self.admin_token.encode()).hexdigest(),
                "principal": "dev-admin", "groups": ["soc-approvers", "soc-leads"],
                "roles": ["admin"],
            }])
        if not settings.sources and "STANCH_SOURCES" not in os.environ:
            out["STANCH_SOURCES"] = json.dumps({
                src: {"mode": "bearer", "secrets": [self.source_token]}
                for src in ("generic", "splunk", "elastic", "sentinel", "crowdstrike",
                            "datadog", "guardduty", "github", "ocsf")
            } | {"splunk": {"mode": "url_token", "secrets": [self.source_token]}})
        if settings.audit.checkpoint_key is None and \
                "STANCH_AUDIT__CHECKPOINT_KEY" not in os.environ:
            out["STANCH_AUDIT__CHECKPOINT_KEY"] = self.checkpoint_key
            if "STANCH_AUDIT__CHECKPOINT_INTERVAL_SECONDS" not in os.environ:
                out["STANCH_AUDIT__CHECKPOINT_INTERVAL_SECONDS"] = "60"
        return out


def child_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("STANCH_STATE_DIR", str(settings.state_dir))
    env["PYTHONUNBUFFERED"] = "1"
    env["STANCH_LOG_FORMAT"] = env.get("STANCH_LOG_FORMAT", "json")
    return env


def up(settings: Settings, *, out: Callable[[str], None] = print,
       wait: bool = True) -> list[Child]:
    """Start everything, wait until healthy, print how to use it; block until signalled."""
    state = settings.state_dir.resolve()
    make_private(state, set_umask=True)
    creds = DevCredentials.load_or_create(state)
    creds.write_token_files(state, creds.in_effect(settings))
    env = child_env(settings, creds.env(settings) | {"STANCH_STATE_DIR": str(state)})
    t_host, _, t_port = settings.temporal.address.rpartition(":")
    for name, host, port in (("Temporal", t_host, int(t_port)),
                             ("Temporal UI", t_host, settings.temporal.ui_port),
                             ("API", settings.api.host, settings.api.port),
                             ("mock IdP", settings.mock_idp.host, settings.mock_idp.port)):
        if not port_is_free(host, port):
            raise RuntimeError(f"{name} port {host}:{port} is already in use: stop whatever "
                               f"holds it or configure another port (see README, Configuration)")
    py = sys.executable
    logs = state / "logs"
    children = [
        Child("temporal", temporal_dev_server_argv(settings, db_file=settings.temporal_db_file
                                                   .resolve()), env, logs / "temporal.log"),
        Child("mock-idp", [py, "-m", "stanch.cli", "mock-idp"], env, logs / "mock-idp.log"),
        Child("worker", [py, "-m", "stanch.cli", "worker"], env, logs / "worker.log"),
        Child("api", [py, "-m", "stanch.cli", "api"], env, logs / "api.log"),
    ]
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        out("\nstopping: api, worker, mock IdP, Temporal …")
        for c in reversed(children):
            c.stop()
        out("stopped.")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a shell that starts us in the background ignores SIGINT, and
    # Python would then never turn Ctrl-C (or `kill -INT`) into KeyboardInterrupt.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        children[0].start()
        wait_until(tcp_open(t_host, int(t_port)), 60, "the Temporal dev server", children[:1])
        children[1].start()
        wait_until(http_ok(f"{settings.mock_idp.url}/healthz"), 30, "the mock IdP", children[:2])
        children[2].start()
        children[3].start()
        wait_until(http_ok(f"{settings.api.url}/readyz"), 60, "the API and Temporal", children)
        _worker_ready(children[2])
    except BaseException:
        stop_all()
        raise
    _print_banner(settings, creds, state, out)
    if not wait:
        return children
    try:
        reason = Supervisor(children, out=out).run()
        out(reason)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
    return children


@dataclass
class Supervisor:
    """Keeps the children running like a process manager: a child that dies is restarted
    after a backoff (0.5 s, doubling, at most ``max_backoff``), and the restart is logged
    and counted (``Child.restarts``). When one child dies ``max_restarts`` times within
    ``window`` seconds it keeps dying: :meth:`run` returns why, and the caller stops all."""

    children: Sequence[Child]
    out: Callable[[str], None] = print
    max_restarts: int = 5
    window: float = 120.0
    max_backoff: float = 30.0
    poll: float = 0.5
    _deaths: dict[str, list[float]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def run(self, until: Callable[[], bool] = lambda: False) -> str:
        """Supervise until ``until()`` is true (returns "") or a child keeps dying."""
        while not until():
            now = time.monotonic()
            for c in self.children:
                if c.name in self._due:
                    if now >= self._due[c.name]:
                        del self._due[c.name]
                        c.restarts += 1
                        c.start()
                        self.out(f"{c.name} restarted (restart #{c.restarts}, pid "
                                 f"{c.proc.pid if c.proc else '?'})")
                    continue
                if c.alive():
                    continue
                code = c.proc.returncode if c.proc is not None else None
                deaths = [t for t in self._deaths.get(c.name, []) if now - t < self.window]
                deaths.append(now)
                self._deaths[c.name] = deaths
                if len(deaths) > self.max_restarts:
                    return (f"giving up: {c.name} died {len(deaths)} times in "
                            f"{self.window:g} s (last exit code {code}); stopping everything."
                            f" Its log ({c.log_path}):\n{c.tail()}")
                delay = min(self.max_backoff, 0.5 * 2 ** (len(deaths) - 1))
                self._due[c.name] = now + delay
                self.out(f"{c.name} exited (code {code}); restarting in {delay:g} s "
                         f"({len(deaths)} exit(s) in the last {self.window:g} s). "
                         f"Last lines of {c.log_path}:\n{c.tail(5)}")
            time.sleep(self.poll)
        return ""


def _worker_ready(worker: Child) -> None:
    wait_until(lambda: "worker.started" in worker.tail(50), 60, "the worker", [worker])


def _print_banner(settings: Settings, creds: DevCredentials, state: Path,
                  out: Callable[[str], None]) -> None:
    out(banner(settings, state, creds.in_effect(settings)))


def banner(settings: Settings, state: Path, files: set[str]) -> str:
    """What `stanch up` prints; it names only the token files that work (``files``)."""
    api = settings.api.url
    idp = settings.mock_idp.url
    sample = (Path(__file__).resolve().parent.parent / "examples" / "alerts"
              / "generic-privilege-escalation.json")
    ui = f"http://{settings.temporal.address.rpartition(':')[0]}:{settings.temporal.ui_port}"
    own = "your configured API token"
    api_token = f"$(cat {state / 'dev-token'})" if "dev-token" in files else "$STANCH_TOKEN"
    src_token = (f"$(cat {state / 'source-token'})" if "source-token" in files
                 else "<the generic source's token from your configuration>")
    token_note = f"token: {state / 'dev-token'}" if "dev-token" in files else f"token: {own}"
    cli = (f"export STANCH_TOKEN=$(cat {state / 'dev-token'}); " if "dev-token" in files
           else "with STANCH_TOKEN set to your token: ")
    verify = (f"STANCH_AUDIT__CHECKPOINT_KEY=$(cat {state / 'checkpoint-key'}) "
              if "checkpoint-key" in files else "")
    if "dev-token" in files:
        from stanch.console.sessions import mint_login_link

        link = f"{api}/ui/login/link?token={mint_login_link(state, 'dev-admin')}"
        sign_in = f"sign in once (10 minutes) as dev-admin: {link}"
    else:
        sign_in = "sign in: .venv/bin/stanch console-link --principal <your principal>"
    return f"""
Stanch is up.
  API          {api}            ({token_note})
  console      {api}/ui/
               {sign_in}
  mock IdP     {idp}
  Temporal     {settings.temporal.address}  UI {ui}
  logs         {state / 'logs'}

Send a sample alert (alice was just added to prod-admins):

  curl -s -X POST {api}/v1/alerts/generic \\
       -H "Authorization: Bearer {src_token}" \\
       -H 'Content-Type: application/json' --data @{sample}

Then see alice's privileged groups gone, and the containment:

  curl -s {idp}/identities/u-alice
  curl -s -H "Authorization: Bearer {api_token}" \\
       {api}/v1/containments/<workflow_id from the answer>

or with the CLI:  {cli}.venv/bin/stanch status
verify the audit chain and its signed checkpoints:
  {verify}.venv/bin/stanch audit verify

Ctrl-C stops everything; a part that dies is restarted."""
