"""`stanch alert send` against the local stack: with no source configured in this shell,
it signs with the token `stanch up` wrote to <state_dir>/source-token (issue 21)."""

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
from stanch.config import Settings, SourceAuth
from stanch.ingest import AuthError, ReplayCache, authenticate

from .conftest import FIXTURES

TOKEN = "src_local-stack-token-for-tests"


@pytest.fixture
def stack_api() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Authenticates like the API `stanch up` starts: bearer (splunk: URL token)."""
    settings = Settings(sources={"generic": SourceAuth(mode="bearer", secrets=[TOKEN]),
                                 "splunk": SourceAuth(mode="url_token", secrets=[TOKEN])})
    seen: list[tuple[str, int]] = []
    cache = ReplayCache()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            source = parts.path.rsplit("/", 1)[-1]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                authenticate(source, headers=dict(self.headers.items()),
                             query=dict(parse_qsl(parts.query)), body=body, settings=settings,
                             now=datetime.now(UTC), replay_cache=cache)
                status = 202
            except AuthError:
                status = 401
            seen.append((source, status))
            data = json.dumps({"status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("source", "fixture"), [
    ("generic", "generic/leaked-deploy-key.json"),
    ("splunk", "splunk/aws-key-enumeration.json"),
])
def test_send_uses_the_local_stack_source_token(stack_api: tuple[str, list[tuple[str, int]]],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                source: str, fixture: str) -> None:
    url, seen = stack_api
    state = tmp_path / ".stanch"
    state.mkdir()
    (state / "source-token").write_text(TOKEN)
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STANCH_STATE_DIR", str(state))
    monkeypatch.delenv("STANCH_SOURCES", raising=False)
    result = CliRunner().invoke(app, ["alert", "send", str(FIXTURES / fixture),
                                      "--source", source, "--url", url])
    assert result.exit_code == 0, result.output
    assert seen == [(source, 202)]
    assert TOKEN not in result.output


def test_without_a_local_stack_it_sends_unsigned(stack_api: tuple[str, list[tuple[str, int]]],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = stack_api
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STANCH_STATE_DIR", str(tmp_path / "nothing-here"))
    result = CliRunner().invoke(app, ["alert", "send",
                                      str(FIXTURES / "generic/leaked-deploy-key.json"),
                                      "--source", "generic", "--url", url])
    assert result.exit_code == 1 and seen == [("generic", 401)]
