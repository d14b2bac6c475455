"""Console sessions behind a load balancer: two API processes sharing one audit database
know the same sessions. Signed in on one, a person is signed in on the other; a logout or
an expiry on one ends the session on both; a message said on one is shown on the other.
Stores on SQLite and PostgreSQL; the apps on real sockets."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.audit.postgres import WORKER_ROLE, setup_postgres
from stanch.config import ApiToken, Settings
from stanch.console import mint_login_link
from stanch.console.security import COOKIE
from stanch.console.session_db import (
    PostgresSessionStore,
    SessionStore,
    SqliteSessionStore,
)
from stanch.models import Principal, Role
from tests.cli.server import serving

REPO = Path(__file__).resolve().parents[2]
ALICE = Principal(id="alice", roles=[Role.responder], groups=["oncall"],
                  identity_keys=["mock:u-alice"])


@pytest.fixture(params=["sqlite", "postgres"])
def two(request: pytest.FixtureRequest,
        tmp_path: Path) -> Iterator[tuple[SessionStore, SessionStore]]:
    """Two stores on one database, as two API processes hold them."""
    if request.param == "sqlite":
        pair: tuple[SessionStore, SessionStore] = (SqliteSessionStore(tmp_path / "audit.db"),
                                                   SqliteSessionStore(tmp_path / "audit.db"))
    else:
        dsn = request.getfixturevalue("postgres_dsn")  # tests/pgserver.py, never 5432
        schema = f"console_test_{uuid.uuid4().hex[:12]}"
        request.addfinalizer(lambda: _drop(dsn, schema))
        setup_postgres(dsn, schema)
        worker = make_conninfo(dsn, user=WORKER_ROLE)  # the API's least-privilege role
        pair = (PostgresSessionStore(worker, schema=schema),
                PostgresSessionStore(worker, schema=schema))
    yield pair
    for s in pair:
        s.close()


def test_a_session_made_on_one_store_is_known_ended_and_spoken_to_on_the_other(
        two: tuple[SessionStore, SessionStore]) -> None:
    a, b = two
    sid, made = a.create(ALICE, "link")
    seen = b.get(sid)
    assert seen is not None
    assert (seen.principal, seen.csrf, seen.via) == (ALICE, made.csrf, "link")
    assert b.get(sid + "x") is None and b.get("") is None and b.get("x" * 5000) is None
    # A message said on one process is shown once, by the other.
    seen.say("ok", "approve recorded")
    again = a.get(sid)
    assert again is not None and again.take_flash() == [("ok", "approve recorded")]
    later = b.get(sid)
    assert later is not None and later.take_flash() == []
    # Logout on one ends it on both.
    b.end(sid)
    assert a.get(sid) is None and b.get(sid) is None


def test_a_sign_in_parked_on_one_store_is_claimed_once_on_the_other(
        two: tuple[SessionStore, SessionStore]) -> None:
    a, b = two
    a.park("state-1", {"verifier": "v", "nonce": "n"}, 600)
    assert b.claim("state-1") == {"verifier": "v", "nonce": "n"}
    assert a.claim("state-1") is None and b.claim("state-1") is None  # once
    a.park("state-2", {"verifier": "v"}, -1)  # older than its ten minutes
    assert b.claim("state-2") is None
    assert b.claim("") is None and b.claim("x" * 5000) is None


def test_only_the_digest_of_the_session_id_is_stored(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "audit.db")
    sid, _ = store.create(ALICE, "oidc")
    store.close()
    assert sid.encode() not in (tmp_path / "audit.db").read_bytes()


def test_an_expired_session_is_gone_on_every_store(tmp_path: Path) -> None:
    a = SqliteSessionStore(tmp_path / "audit.db", lifetime=-1)
    b = SqliteSessionStore(tmp_path / "audit.db")
    sid, _ = a.create(ALICE, "link")
    assert a.get(sid) is None and b.get(sid) is None
    a.close()
    b.close()


def _drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --------------------------------------------------------------------------- two API apps


def _settings(tmp: Path) -> Settings:
    settings = Settings(
        state_dir=tmp / "state", playbooks_dir=REPO / "playbooks",
        inventory_paths=[REPO / "inventory"],
        api_tokens=[ApiToken(sha256=hash_token("t" * 40), principal="alice",
                             roles=["responder"], groups=["oncall"]),
                    ApiToken(sha256=hash_token("v" * 40), principal="vic", roles=["viewer"])],
        _env_file=None)  # type: ignore[call-arg]
    settings.temporal.address = "127.0.0.1:9"  # these pages never reach Temporal
    return settings


@pytest.fixture()
def apis(tmp_path: Path) -> Iterator[tuple[Settings, str, str]]:
    """Two API processes' apps on one state directory (one audit SQLite), on real sockets."""
    settings = _settings(tmp_path)
    with serving(create_app(settings)) as one, serving(create_app(_settings(tmp_path))) as two:
        yield settings, one, two


def _sign_in(settings: Settings, base: str, who: str) -> str:
    token = mint_login_link(settings.state_dir, who)
    resp = httpx.post(f"{base}/ui/login/link", data={"token": token}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.cookies[COOKIE]


def _page(base: str, sid: str, path: str = "/ui/contain") -> httpx.Response:
    return httpx.get(f"{base}{path}", cookies={COOKIE: sid}, timeout=10)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:400]
    return found.group(1)


def test_signed_in_on_one_api_signed_in_on_the_other_and_logout_ends_both(
        apis: tuple[Settings, str, str]) -> None:
    settings, one, two = apis
    sid = _sign_in(settings, one, "alice")
    on_two = _page(two, sid)
    assert on_two.status_code == 200 and "alice" in on_two.text
    assert "Containing by hand needs the responder role" not in on_two.text
    # A form rendered by one process is accepted by the other (the same CSRF secret).
    csrf = _csrf(_page(one, sid).text)
    assert csrf == _csrf(on_two.text)
    # Logout posted to the second process ends the session on the first.
    out = httpx.post(f"{two}/ui/logout", data={"csrf": csrf}, cookies={COOKIE: sid},
                     timeout=10)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    for base in (one, two):
        gone = _page(base, sid)
        assert gone.status_code == 303 and gone.headers["location"] == "/ui/login"


def test_a_message_said_on_one_api_is_shown_by_the_other(
        apis: tuple[Settings, str, str]) -> None:
    settings, one, two = apis
    sid = _sign_in(settings, one, "vic")  # a viewer: containing by hand is refused
    csrf = _csrf(_page(one, sid).text)  # the logout form in the header
    refused = httpx.post(f"{one}/ui/contain", cookies={COOKIE: sid}, timeout=10, data={
        "csrf": csrf, "identity": "alice@example.com", "level": "reduce_scope",
        "reason": "looks phished"})
    assert refused.status_code == 303
    shown = _page(two, sid)
    assert "vic lacks the &#39;responder&#39; role needed to contain by hand" in shown.text
    assert "lacks the" not in _page(one, sid).text  # shown once


def test_a_session_that_expired_is_refused_by_both_apis(
        apis: tuple[Settings, str, str]) -> None:
    settings, one, two = apis
    sid = _sign_in(settings, one, "alice")
    with sqlite3.connect(settings.audit_sqlite_path) as db:  # as the clock would
        db.execute("UPDATE console_sessions SET expires = ?", (time.time() - 1,))
    for base in (one, two):
        assert _page(base, sid).status_code == 303
