"""A stateful fake of the slice of Okta's Management API the adapter uses.

Every request is first validated against Okta's published OpenAPI contract
(``/work/shared/specs/okta-management-subset.yaml``: path, method, parameters, body,
security) with openapi-core; a request the contract rejects fails the test at once.
Behaviour follows Okta's documentation: lifecycle transitions are only valid from the right
status (400 ``E0000001`` otherwise), membership PUT/DELETE are idempotent 204s, an active
client secret cannot be deleted, an app holds at most two secrets, lists page with
``Link: rel="next"``, and queued faults (e.g. 429 ``E0000047``) are answered first.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

SPEC = Path("/work/shared/specs/okta-management-subset.yaml")
ORG = "https://stanch-test.okta.com"
PAGE = 2


@lru_cache(maxsize=1)
def okta_spec() -> OpenAPI:
    # The vendor document itself has schema defaults that are not valid date-times, so the
    # meta-validation of the spec is off; request validation against it stays strict.
    return OpenAPI.from_file_path(str(SPEC), config=Config(spec_validator_cls=None))


def _okta_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:17]


def _error(status: int, code: str, summary: str) -> httpx.Response:
    return httpx.Response(status, json={"errorCode": code, "errorSummary": summary,
                                        "errorLink": code, "errorId": _okta_id("oae"),
                                        "errorCauses": []})


@dataclass
class OktaFake:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    grants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    app_secrets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    faults: list[httpx.Response] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    validate: bool = True

    # ----------------------------------------------------------------- seeding

    def add_user(self, status: str = "ACTIVE") -> str:
        uid = _okta_id("00u")
        self.users[uid] = {"id": uid, "status": status,
                           "profile": {"login": f"{uid}@example.com"}}
        self.sessions[uid] = 2
        self.grants[uid] = {}
        return uid

    def add_group(self, name: str, kind: str = "OKTA_GROUP") -> str:
        gid = _okta_id("00g")
        self.groups[gid] = {"id": gid, "type": kind, "profile": {"name": name}}
        self.members[gid] = set()
        return gid

    def add_grant(self, uid: str, client_id: str) -> str:
        grant_id = _okta_id("oag")
        self.grants[uid][grant_id] = {"id": grant_id, "clientId": client_id,
                                      "scopeId": "okta.users.read", "status": "ACTIVE"}
        return grant_id

    def add_app(self, secrets_count: int = 1) -> str:
        app = _okta_id("0oa")
        self.app_secrets[app] = {}
        for _ in range(secrets_count):
            self._new_secret(app)
        return app

    def _new_secret(self, app: str) -> dict[str, Any]:
        sid = _okta_id("ocs")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        value = secrets.token_urlsafe(30)
        secret = {"id": sid, "status": "ACTIVE", "client_secret": value,
                  "secret_hash": secrets.token_hex(8), "created": now, "lastUpdated": now}
        self.app_secrets[app][sid] = secret
        return secret

    def all_client_secrets(self) -> list[str]:
        return [s["client_secret"] for app in self.app_secrets.values() for s in app.values()]

    def rate_limit(self, seconds: int = 30) -> None:
        reset = int(time.time()) + seconds
        response = _error(429, "E0000047", "API call exceeded rate limit due to too many "
                                           "requests.")
        response.headers["X-Rate-Limit-Reset"] = str(reset)
        response.headers["X-Rate-Limit-Limit"] = "600"
        response.headers["X-Rate-Limit-Remaining"] = "0"
        self.faults.append(response)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ----------------------------------------------------------------- contract

    def check_contract(self, request: httpx.Request) -> None:
        body = request.content or None
        prepared = requests.Request(
            method=request.method, url=str(request.url),
            headers={k: v for k, v in request.headers.items()
                     if k.lower() not in ("content-length", "host")},
            data=body).prepare()
        try:
            okta_spec().validate_request(RequestsOpenAPIRequest(prepared))
        except Exception as err:
            raise AssertionError(f"request violates Okta's contract: {request.method} "
                                 f"{request.url.path}: {err!r}") from err

    # ----------------------------------------------------------------- routing

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.validate:
            self.check_contract(request)
        self.seen.append(f"{request.method} {request.url.path}")
        if not request.headers.get("Authorization", "").startswith(("SSWS ", "Bearer ")):
            return _error(401, "E0000011", "Invalid token provided")
        if self.faults:
            return self.faults.pop(0)
        for method, pattern, handler in self._routes():
            m = re.fullmatch(pattern, request.url.path)
            if m and method == request.method:
                return handler(request, *m.groups())
        return _error(404, "E0000022", "The endpoint does not support the provided method.")

    def _routes(self) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        u = r"/api/v1/users/([^/]+)"
        s = r"/api/v1/apps/([^/]+)/credentials/secrets"
        return [
            ("GET", u, self._get_user),
            ("GET", u + "/groups", self._user_groups),
            ("GET", u + "/grants", self._list_grants),
            ("DELETE", u + "/grants", self._revoke_grants),
            ("DELETE", u + r"/clients/([^/]+)/grants", self._revoke_client_grants),
            ("DELETE", u + "/sessions", self._revoke_sessions),
            ("POST", u + r"/lifecycle/(suspend|unsuspend)", self._lifecycle),
            ("PUT", r"/api/v1/groups/([^/]+)/users/([^/]+)", self._add_member),
            ("DELETE", r"/api/v1/groups/([^/]+)/users/([^/]+)", self._remove_member),
            ("GET", s, self._list_secrets),
            ("POST", s, self._create_secret),
            ("DELETE", s + "/([^/]+)", self._delete_secret),
            ("POST", s + r"/([^/]+)/lifecycle/(activate|deactivate)", self._secret_lifecycle),
        ]

    def _user(self, uid: str) -> dict[str, Any] | None:
        return self.users.get(uid)

    def _no_user(self, uid: str) -> httpx.Response:
        return _error(404, "E0000007", f"Not found: Resource not found: {uid} (User)")

    def _get_user(self, _: httpx.Request, uid: str) -> httpx.Response:
        user = self._user(uid)
        return httpx.Response(200, json=user) if user else self._no_user(uid)

    def _user_groups(self, _: httpx.Request, uid: str) -> httpx.Response:
        if uid not in self.users:
            return self._no_user(uid)
        return httpx.Response(200, json=[g for gid, g in self.groups.items()
                                         if uid in self.members[gid]])

    def _list_grants(self, request: httpx.Request, uid: str) -> httpx.Response:
        if uid not in self.users:
            return self._no_user(uid)
        items = sorted(self.grants[uid].values(), key=lambda g: g["id"])
        after = request.url.params.get("after")
        if after:
            items = [g for g in items if g["id"] > after]
        page, rest = items[:PAGE], items[PAGE:]
        headers = {}
        if rest:
            headers["Link"] = (f'<{ORG}/api/v1/users/{uid}/grants?after={page[-1]["id"]}'
                               f'&limit={PAGE}>; rel="next"')
        return httpx.Response(200, json=page, headers=headers)

    def _revoke_grants(self, _: httpx.Request, uid: str) -> httpx.Response:
        if uid not in self.users:
            return self._no_user(uid)
        self.grants[uid].clear()
        return httpx.Response(204)

    def _revoke_client_grants(self, _: httpx.Request, uid: str, client: str) -> httpx.Response:
        if uid not in self.users:
            return self._no_user(uid)
        self.grants[uid] = {k: g for k, g in self.grants[uid].items() if g["clientId"] != client}
        return httpx.Response(204)

    def _revoke_sessions(self, request: httpx.Request, uid: str) -> httpx.Response:
        if uid not in self.users:
            return self._no_user(uid)
        self.sessions[uid] = 0
        if request.url.params.get("oauthTokens") == "true":
            self.users[uid].setdefault("_revoked_tokens", 0)
            self.users[uid]["_revoked_tokens"] += 1
        return httpx.Response(204)

    def _lifecycle(self, _: httpx.Request, uid: str, op: str) -> httpx.Response:
        user = self._user(uid)
        if user is None:
            return self._no_user(uid)
        need, becomes = ("ACTIVE", "SUSPENDED") if op == "suspend" else ("SUSPENDED", "ACTIVE")
        if user["status"] != need:
            return _error(400, "E0000001", f"Api validation failed: cannot {op} a user in "
                                           f"status {user['status']}")
        user["status"] = becomes
        return httpx.Response(200, json={})

    def _add_member(self, _: httpx.Request, gid: str, uid: str) -> httpx.Response:
        if gid not in self.groups or uid not in self.users:
            return _error(404, "E0000007", "Not found")
        if self.groups[gid]["type"] != "OKTA_GROUP":
            return _error(403, "E0000006", "You do not have permission to perform the "
                                           "requested action")
        self.members[gid].add(uid)
        return httpx.Response(204)

    def _remove_member(self, _: httpx.Request, gid: str, uid: str) -> httpx.Response:
        if gid not in self.groups or uid not in self.users:
            return _error(404, "E0000007", "Not found")
        if self.groups[gid]["type"] != "OKTA_GROUP":
            return _error(403, "E0000006", "You do not have permission to perform the "
                                           "requested action")
        self.members[gid].discard(uid)
        return httpx.Response(204)

    def _public(self, secret: dict[str, Any]) -> dict[str, Any]:
        # Okta returns the secret value masked on reads; only creation shows it once
        return {**secret, "client_secret": secret["client_secret"][:4] + "*" * 8}

    def _list_secrets(self, _: httpx.Request, app: str) -> httpx.Response:
        if app not in self.app_secrets:
            return _error(404, "E0000007", "Not found")
        return httpx.Response(200, json=[self._public(s)
                                         for s in self.app_secrets[app].values()])

    def _create_secret(self, request: httpx.Request, app: str) -> httpx.Response:
        if app not in self.app_secrets:
            return _error(404, "E0000007", "Not found")
        if len(self.app_secrets[app]) >= 2:
            return _error(400, "E0000001", "Api validation failed: You can't have more than "
                                           "two client secrets")
        body = json.loads(request.content or b"{}")
        secret = self._new_secret(app)
        if body.get("status") == "INACTIVE":
            secret["status"] = "INACTIVE"
        return httpx.Response(201, json=secret)

    def _delete_secret(self, _: httpx.Request, app: str, sid: str) -> httpx.Response:
        secret = self.app_secrets.get(app, {}).get(sid)
        if secret is None:
            return _error(404, "E0000007", "Not found")
        if secret["status"] == "ACTIVE":
            return _error(400, "E0000001", "Api validation failed: can't delete an active "
                                           "client secret")
        del self.app_secrets[app][sid]
        return httpx.Response(204)

    def _secret_lifecycle(self, _: httpx.Request, app: str, sid: str, op: str
                          ) -> httpx.Response:
        secret = self.app_secrets.get(app, {}).get(sid)
        if secret is None:
            return _error(404, "E0000007", "Not found")
        if op == "deactivate" and sum(
            s["status"] == "ACTIVE" for s in self.app_secrets[app].values()
        ) == 1 and secret["status"] == "ACTIVE":
            return _error(400, "E0000001", "Api validation failed: can't deactivate the only "
                                           "active client secret")
        secret["status"] = "ACTIVE" if op == "activate" else "INACTIVE"
        return httpx.Response(200, json=self._public(secret))
