"""Every console route, without a session: sign-in pages answer, everything else sends the
browser to sign in and does nothing. Routes come from ``app.routes``, so a new page is
covered as soon as it is mounted (the API's bearer matrix, tests/api, skips ``/ui``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from stanch.api.app import create_app
from stanch.config import Settings
from tests.api.test_auth_matrix import _flat_routes
from tests.cli.server import serving

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {("GET", "/ui/login"), ("GET", "/ui/login/link"), ("POST", "/ui/login/link"),
          ("GET", "/ui/auth/start"), ("GET", "/ui/auth/callback")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    tmp = tmp_path_factory.mktemp("console-matrix")
    settings = Settings(state_dir=tmp / "state", playbooks_dir=REPO / "playbooks",
                        inventory_paths=[REPO / "inventory"],
                        _env_file=None)  # type: ignore[call-arg]
    # Temporal is never reached without a session: its address names nothing.
    settings.temporal.address = "127.0.0.1:9"
    return create_app(settings)


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with serving(app) as base:
        yield base


def test_without_a_session_nothing_but_sign_in_answers(app: FastAPI, url: str) -> None:
    found = console_routes(app)
    assert ("POST", "/ui/c/{wid}/decide") in found and ("GET", "/ui/") in found
    failures = []
    for method, path in found:
        concrete = path.replace("{wid}", "containment-" + "0" * 24).replace(
            "{verb}", "revoke").replace("{alert_id}", "alert-x")
        if method == "ANY":  # the static files: public, no data
            resp = httpx.get(f"{url}{concrete}/htmx.min.js", timeout=10)
            ok = resp.status_code == 200
        else:
            resp = httpx.request(method, f"{url}{concrete}", timeout=10,
                                 data={"csrf": "guess"} if method == "POST" else None,
                                 cookies={"stanch_session": "made-up"})
            if (method, path) in PUBLIC:
                ok = resp.status_code < 500 and resp.status_code != 303
            else:
                ok = resp.status_code == 303 and resp.headers["location"] == "/ui/login"
        if not ok:
            failures.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")
        if method != "ANY":
            assert "default-src 'self'" in resp.headers.get("content-security-policy", "")
    assert not failures, "\n".join(failures)


def console_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route under /ui; ("ANY", path) for a mount."""
    out = []
    for route in _flat_routes(app):
        path = getattr(route, "path", None) or ""
        if not path.startswith("/ui"):
            continue
        methods = getattr(route, "methods", None)
        if not methods:
            out.append(("ANY", path))
            continue
        out += [(m, path) for m in sorted(set(methods) - {"HEAD", "OPTIONS"})]
    return out
