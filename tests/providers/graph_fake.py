"""A stateful fake of the Microsoft Graph v1.0 calls the Entra adapter makes, answering as
Graph's documentation says: ``$ref`` add of an existing member → 400 "One or more added
object references already exist…", removal of a non-member → 404, ``revokeSignInSessions``
→ 200 ``{"value": true}`` moving ``signInSessionsValidFromDateTime``, ``addPassword`` →
200 with ``secretText`` (shown once), ``removePassword``/``PATCH``/``$ref`` → 204, app role
assignment POST → 201 with a new id, collections paged with ``@odata.nextLink``. Queued
faults (429/503 with ``Retry-After``) are answered first. The token endpoint issues
client-credential tokens and the fake checks every Graph call carries one.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

GRAPH = "https://graph.microsoft.com/v1.0"
PAGE = 2


def _now(offset: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message,
                                                  "innerError": {"request-id": str(
                                                      uuid.uuid4())}}})


@dataclass
class GraphFake:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # users + SPs
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets_issued: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # access token → client id
    clients: dict[str, str] = field(default_factory=dict)  # client id → secret
    faults: list[httpx.Response] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- seeding

    def add_user(self) -> str:
        oid = str(uuid.uuid4())
        self.objects[oid] = {"id": oid, "kind": "users", "accountEnabled": True,
                             "signInSessionsValidFromDateTime": _now(-86400)}
        return oid

    def add_service_principal(self, passwords: int = 1) -> str:
        oid = str(uuid.uuid4())
        self.objects[oid] = {"id": oid, "kind": "servicePrincipals", "accountEnabled": True,
                             "passwordCredentials": []}
        for _ in range(passwords):
            self._add_password(oid, "initial")
        return oid

    def add_group(self, name: str, dynamic: bool = False) -> str:
        gid = str(uuid.uuid4())
        self.groups[gid] = {"@odata.type": "#microsoft.graph.group", "id": gid,
                            "displayName": name,
                            "groupTypes": ["DynamicMembership"] if dynamic else []}
        self.members[gid] = set()
        return gid

    def assign_role(self, principal: str, resource: str, role: str) -> str:
        aid = secrets.token_urlsafe(32)
        self.assignments[aid] = {"id": aid, "principalId": principal, "resourceId": resource,
                                 "appRoleId": role, "createdDateTime": _now()}
        return aid

    def add_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def throttle(self, status: int = 429, retry_after: int = 7) -> None:
        self.faults.append(httpx.Response(
            status, headers={"Retry-After": str(retry_after)},
            json={"error": {"code": "TooManyRequests" if status == 429 else
                            "ServiceUnavailable", "message": "Please retry again later."}}))

    def _add_password(self, oid: str, name: str) -> dict[str, Any]:
        secret = secrets.token_urlsafe(30)
        self.secrets_issued.append(secret)
        cred = {"keyId": str(uuid.uuid4()), "displayName": name, "hint": secret[:3],
                "startDateTime": _now(), "endDateTime": _now(86400 * 180)}
        self.objects[oid]["passwordCredentials"].append(cred)
        return {**cred, "secretText": secret}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ----------------------------------------------------------------- routing

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if request.url.host == "login.microsoftonline.com":
            return self._token(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if token not in self.tokens and not token.startswith("static-"):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.faults:
            return self.faults.pop(0)
        path = request.url.path.removeprefix("/v1.0")
        for method, pattern, handler in self._routes():
            m = re.fullmatch(pattern, path)
            if m and method == request.method:
                return handler(request, *m.groups())
        return _error(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = httpx.QueryParams(request.content.decode())
        client = form.get("client_id", "")
        if form.get("grant_type") != "client_credentials" or \
                self.clients.get(client) != form.get("client_secret"):
            return httpx.Response(401, json={"error": "invalid_client",
                                             "error_description": "AADSTS7000215"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = client
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599,
                                         "access_token": token})

    def _routes(self) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        obj = r"/(users|servicePrincipals)/([^/]+)"
        return [
            ("GET", obj, self._get),
            ("PATCH", obj, self._patch),
            ("GET", obj + "/memberOf", self._member_of),
            ("GET", obj + "/appRoleAssignments", self._list_assignments),
            ("POST", obj + "/appRoleAssignments", self._post_assignment),
            ("DELETE", obj + "/appRoleAssignments/([^/]+)", self._delete_assignment),
            ("POST", r"/users/([^/]+)/revokeSignInSessions", self._revoke_sessions),
            ("POST", r"/servicePrincipals/([^/]+)/addPassword", self._add_password_call),
            ("POST", r"/servicePrincipals/([^/]+)/removePassword", self._remove_password),
            ("POST", r"/groups/([^/]+)/members/\$ref", self._add_member),
            ("DELETE", r"/groups/([^/]+)/members/([^/]+)/\$ref", self._remove_member),
        ]

    def _find(self, kind: str, oid: str) -> dict[str, Any] | None:
        found = self.objects.get(oid)
        return found if found and found["kind"] == kind else None

    def _missing(self, oid: str) -> httpx.Response:
        return _error(404, "Request_ResourceNotFound",
                      f"Resource '{oid}' does not exist or one of its queried reference-property "
                      "objects are not present.")

    def _page(self, request: httpx.Request, items: list[dict[str, Any]]) -> httpx.Response:
        skip = int(request.url.params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": items[skip:skip + PAGE]}
        if skip + PAGE < len(items):
            body["@odata.nextLink"] = str(request.url.copy_set_param("$skiptoken",
                                                                     str(skip + PAGE)))
        return httpx.Response(200, json=body)

    def _get(self, request: httpx.Request, kind: str, oid: str) -> httpx.Response:
        found = self._find(kind, oid)
        if found is None:
            return self._missing(oid)
        select = request.url.params.get("$select")
        public = {k: v for k, v in found.items() if k != "kind"}
        if select:
            public = {k: v for k, v in public.items() if k in select.split(",")}
        return httpx.Response(200, json=public)

    def _patch(self, request: httpx.Request, kind: str, oid: str) -> httpx.Response:
        found = self._find(kind, oid)
        if found is None:
            return self._missing(oid)
        body = json.loads(request.content)
        if set(body) - {"accountEnabled"}:
            return _error(400, "Request_BadRequest", "unsupported property in fake")
        found.update(body)
        return httpx.Response(204)

    def _member_of(self, request: httpx.Request, kind: str, oid: str) -> httpx.Response:
        if self._find(kind, oid) is None:
            return self._missing(oid)
        return self._page(request, [g for gid, g in self.groups.items()
                                    if oid in self.members[gid]])

    def _list_assignments(self, request: httpx.Request, kind: str, oid: str) -> httpx.Response:
        if self._find(kind, oid) is None:
            return self._missing(oid)
        return self._page(request, [a for a in self.assignments.values()
                                    if a["principalId"] == oid])

    def _post_assignment(self, request: httpx.Request, kind: str, oid: str) -> httpx.Response:
        if self._find(kind, oid) is None:
            return self._missing(oid)
        body = json.loads(request.content)
        if body.get("principalId") != oid or not body.get("resourceId") or \
                not body.get("appRoleId"):
            return _error(400, "Request_BadRequest", "principalId, resourceId and appRoleId "
                                                     "are required")
        for a in self.assignments.values():
            if (a["principalId"], a["resourceId"], a["appRoleId"]) == (
                    oid, body["resourceId"], body["appRoleId"]):
                return _error(400, "Request_BadRequest", "Permission being assigned already "
                                                         "exists on the object")
        aid = self.assign_role(oid, body["resourceId"], body["appRoleId"])
        return httpx.Response(201, json=self.assignments[aid])

    def _delete_assignment(self, _: httpx.Request, kind: str, oid: str,
                           aid: str) -> httpx.Response:
        a = self.assignments.get(aid)
        if a is None or a["principalId"] != oid:
            return self._missing(aid)
        del self.assignments[aid]
        return httpx.Response(204)

    def _revoke_sessions(self, _: httpx.Request, oid: str) -> httpx.Response:
        found = self._find("users", oid)
        if found is None:
            return self._missing(oid)
        found["signInSessionsValidFromDateTime"] = _now()
        return httpx.Response(200, json={"@odata.context": f"{GRAPH}/$metadata#Edm.Boolean",
                                         "value": True})

    def _add_password_call(self, request: httpx.Request, oid: str) -> httpx.Response:
        if self._find("servicePrincipals", oid) is None:
            return self._missing(oid)
        body = json.loads(request.content)
        name = body.get("passwordCredential", {}).get("displayName", "")
        return httpx.Response(200, json=self._add_password(oid, name))

    def _remove_password(self, request: httpx.Request, oid: str) -> httpx.Response:
        found = self._find("servicePrincipals", oid)
        if found is None:
            return self._missing(oid)
        key = json.loads(request.content).get("keyId")
        creds = found["passwordCredentials"]
        if not any(c["keyId"] == key for c in creds):
            return _error(400, "Request_BadRequest", f"No password credential found with "
                                                     f"keyId {key}")
        found["passwordCredentials"] = [c for c in creds if c["keyId"] != key]
        return httpx.Response(204)

    def _add_member(self, request: httpx.Request, gid: str) -> httpx.Response:
        if gid not in self.groups:
            return self._missing(gid)
        ref = json.loads(request.content).get("@odata.id", "")
        oid = ref.rsplit("/", 1)[-1]
        if oid not in self.objects:
            return self._missing(oid)
        if self.groups[gid]["groupTypes"]:
            return _error(400, "Request_BadRequest", "Insufficient privileges: dynamic group "
                                                     "membership cannot be changed")
        if oid in self.members[gid]:
            return _error(400, "Request_BadRequest", "One or more added object references "
                          "already exist for the following modified properties: 'members'.")
        self.members[gid].add(oid)
        return httpx.Response(204)

    def _remove_member(self, _: httpx.Request, gid: str, oid: str) -> httpx.Response:
        if gid not in self.groups or oid not in self.members[gid]:
            return _error(404, "Request_ResourceNotFound", "One or more removed object "
                          "references do not exist for the following modified properties: "
                          "'members'.")
        if self.groups[gid]["groupTypes"]:
            return _error(400, "Request_BadRequest", "dynamic group membership cannot be "
                                                     "changed")
        self.members[gid].discard(oid)
        return httpx.Response(204)
