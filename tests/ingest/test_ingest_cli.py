"""`stanch alert send` signs so that `authenticate` accepts; `alerts dead-letter` lists."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from typer.testing import CliRunner

from stanch.cli import app
from stanch.config import Settings
from stanch.ingest import AuthError, DeadLetterStore, ReplayCache, authenticate

from .conftest import FIXTURES, NOW, SOURCE_AUTH

TOML = """
[sources.github]
mode = "github"
secrets = ["gh-hook-secret"]

[sources.generic]
mode = "standard_webhooks"
secrets = ["whsec_c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="]

[sources.crowdstrike]
mode = "hmac"
secrets = ["falcon-hmac-key"]
timestamp_header = "X-Timestamp"
"""


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    settings = Settings(sources=dict(SOURCE_AUTH))
    seen: list[tuple[str, int]] = []
    cache = ReplayCache()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            source = parts.path.rsplit("/", 1)[-1]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                key = authenticate(source, headers=dict(self.headers.items()),
                                   query=dict(parse_qsl(parts.query)), body=body,
                                   settings=settings, now=datetime.now(UTC),
                                   replay_cache=cache)
                status, out = 202, {"key": key}
            except AuthError as err:
                status, out = 401, {"detail": err.reason}
            seen.append((source, status))
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "stanch.toml"
    cfg.write_text(TOML)
    monkeypatch.setenv("STANCH_CONFIG", str(cfg))
    monkeypatch.setenv("STANCH_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.parametrize(("source", "fixture"), [
    ("github", "github/aws-key-created.json"),
    ("generic", "generic/leaked-deploy-key.json"),
    ("crowdstrike", "crowdstrike/identity-bad-reputation.json"),
])
def test_send_signs_with_configured_mode(server, config, source, fixture):
    url, seen = server
    result = CliRunner().invoke(app, ["alert", "send", str(FIXTURES / fixture),
                                      "--source", source, "--url", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("202")
    assert seen == [(source, 202)]


def test_send_with_wrong_secret_from_env_prints_401_and_exits_1(server, config, monkeypatch):
    url, seen = server
    monkeypatch.setenv("WRONG", "not-the-secret")
    payload = str(FIXTURES / "github/aws-key-created.json")
    result = CliRunner().invoke(app, ["alert", "send", payload, "--source", "github",
                                      "--url", url, "--secret-env", "WRONG"])
    assert seen == [("github", 401)]
    assert result.exit_code == 1
    assert "401" in result.output and "does not match" in result.output


def test_dead_letter_lists_newest_first(config):
    store = DeadLetterStore(config / "state" / "dead_letter.db")
    first = store.put("splunk", {}, b'{"result": {}}', "sid: missing", NOW)
    second = store.put("elastic", {}, b"{}", "context.alerts: missing", NOW)
    store.close()
    runner = CliRunner()
    out = runner.invoke(app, ["alerts", "dead-letter", "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["reason"] == "context.alerts: missing"
    table = runner.invoke(app, ["alerts", "dead-letter"])
    assert "sid: missing" in table.output
    shown = runner.invoke(app, ["alerts", "dead-letter", "--show", first])
    assert json.loads(shown.output)["body"] == '{"result":{}}'
