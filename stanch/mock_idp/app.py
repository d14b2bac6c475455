"""The mock IdP's HTTP API: read identities, act on them, watch the change log, inject faults.

Reached over HTTP like any real provider (``activities.providers.mock``), never imported by
Stanch's own code. Handlers are ``async`` and call SQLite directly: each call is a few
indexed statements, cheaper than a hop through the thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stanch.mock_idp.faults import FaultMiddleware, FaultRule, Faults, FaultSet
from stanch.mock_idp.store import CREDENTIAL_TYPES, IdpError, Store


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoveGroups(_Body):
    groups: list[str] = Field(description="Names to remove; absent ones are ignored.")


class Membership(_Body):
    name: str = Field(min_length=1)
    privileged: bool = False


class AddGroups(_Body):
    groups: list[Membership]


class Rotate(_Body):
    credential_id: str | None = Field(default=None, description="Credential to rotate.")
    type: str | None = Field(
        default=None, description=f"Rotate the active credential of this type: {CREDENTIAL_TYPES}."
    )


class NewCredential(_Body):
    id: str = Field(min_length=1)
    type: str = Field(description=f"One of {CREDENTIAL_TYPES}.")


class NewIdentity(_Body):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@-]+$")
    kind: str = "user"
    display_name: str = ""
    upn: str | None = None
    groups: list[Membership] = Field(default_factory=list)
    sessions: list[str] = Field(default_factory=list)
    credentials: list[NewCredential] = Field(default_factory=list)


class Reset(_Body):
    seed: bool = True


def _ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _after(store: Store, identity_id: str, result: dict[str, Any], status: int = 200
           ) -> JSONResponse:
    """A write's answer carries the identity as it is now (``identity``), as many IdPs'
    write responses do: the caller verifies without another round trip."""
    return _ok({**result, "identity": store.identity(identity_id)}, status)


def create_app(db_path: Path, *, seed: bool = True) -> FastAPI:
    """Build the app over the SQLite file ``db_path``; seed demo identities into a new file."""
    store = Store(db_path)
    if seed:
        store.seed_if_empty()
    faults = Faults()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = FastAPI(title="Stanch mock IdP", version="1", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.store = store
    app.state.faults = faults
    app.add_middleware(FaultMiddleware, faults=faults)

    @app.exception_handler(IdpError)
    async def _idp_error(_: Request, exc: IdpError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message},
                            status_code=exc.status)

    # ---------------------------------------------------------------- reads

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return _ok({"status": "ok"})

    @app.get("/identities")
    async def list_identities() -> JSONResponse:
        return _ok(store.list_identities())

    @app.get("/identities/{identity_id}")
    async def get_identity(identity_id: str) -> JSONResponse:
        return _ok(store.identity(identity_id))

    @app.get("/changes")
    async def changes(
        since: int = Query(default=0, ge=0),
        identity: str | None = None,
        idempotency_key: str | None = None,
        limit: int = Query(default=1000, ge=1, le=10_000),
    ) -> JSONResponse:
        return _ok(store.changes(since=since, identity_id=identity,
                                 idempotency_key=idempotency_key, limit=limit))

    @app.post("/identities", status_code=201)
    async def create_identity(body: NewIdentity) -> JSONResponse:
        bad = [c.type for c in body.credentials if c.type not in CREDENTIAL_TYPES]
        if bad:
            raise IdpError(400, "InvalidInput",
                           f"unknown credential type(s) {bad}; one of {CREDENTIAL_TYPES}")
        return _ok(store.create_identity({
            "id": body.id, "kind": body.kind, "display_name": body.display_name or body.id,
            "upn": body.upn, "groups": [(g.name, g.privileged) for g in body.groups],
            "sessions": body.sessions,
            "credentials": [(c.id, c.type) for c in body.credentials],
        }), 201)

    # ---------------------------------------------------------------- actions

    @app.post("/identities/{identity_id}/groups/remove")
    async def remove_groups(identity_id: str, body: RemoveGroups,
                            idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        changed = store.remove_groups(identity_id, body.groups, idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/groups/add")
    async def add_groups(identity_id: str, body: AddGroups,
                         idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        groups = [(g.name, g.privileged) for g in body.groups]
        changed = store.add_groups(identity_id, groups, idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/sessions/revoke")
    async def revoke_sessions(identity_id: str,
                              idempotency_key: str | None = Header(default=None)
                              ) -> JSONResponse:
        changed = store.revoke_sessions(identity_id, idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/credentials/rotate")
    async def rotate_credential(identity_id: str, body: Rotate | None = None,
                                idempotency_key: str | None = Header(default=None)
                                ) -> JSONResponse:
        body = body or Rotate()
        if body.type is not None and body.type not in CREDENTIAL_TYPES:
            raise IdpError(400, "InvalidInput",
                           f"unknown credential type {body.type!r}; one of {CREDENTIAL_TYPES}")
        result = store.rotate_credential(identity_id, body.credential_id, body.type,
                                         idempotency_key)
        return _after(store, identity_id, result, 200 if result["replayed"] else 201)

    @app.post("/identities/{identity_id}/credentials/{credential_id}/activate")
    async def activate_credential(identity_id: str, credential_id: str,
                                  idempotency_key: str | None = Header(default=None)
                                  ) -> JSONResponse:
        changed = store.set_credential_status(identity_id, credential_id, "active",
                                              idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/credentials/{credential_id}/deactivate")
    async def deactivate_credential(identity_id: str, credential_id: str,
                                    idempotency_key: str | None = Header(default=None)
                                    ) -> JSONResponse:
        changed = store.set_credential_status(identity_id, credential_id, "inactive",
                                              idempotency_key)
        return _after(store, identity_id, changed)

    @app.delete("/identities/{identity_id}/credentials/{credential_id}")
    async def delete_credential(identity_id: str, credential_id: str,
                                idempotency_key: str | None = Header(default=None)
                                ) -> JSONResponse:
        changed = store.delete_credential(identity_id, credential_id, idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/disable")
    async def disable(identity_id: str,
                      idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        changed = store.set_identity_status(identity_id, "disabled", idempotency_key)
        return _after(store, identity_id, changed)

    @app.post("/identities/{identity_id}/enable")
    async def enable(identity_id: str,
                     idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        changed = store.set_identity_status(identity_id, "active", idempotency_key)
        return _after(store, identity_id, changed)

    # ---------------------------------------------------------------- test control

    @app.post("/faults")
    async def add_faults(request: Request) -> JSONResponse:
        try:
            raw = await request.json()
            fault_set = (FaultSet.model_validate(raw) if isinstance(raw, dict) and "rules" in raw
                         else FaultSet(rules=[FaultRule.model_validate(raw)]))
        except (ValueError, ValidationError) as err:
            reason = ("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in err.errors(include_input=False))
                      if isinstance(err, ValidationError) else "body is not JSON")
            raise IdpError(422, "InvalidInput", f"fault rule refused: {reason}") from None
        added = faults.add(fault_set.rules, fault_set.seed)
        return _ok({"added": added, "rules": faults.describe()}, 201)

    @app.get("/faults")
    async def list_faults() -> JSONResponse:
        return _ok(faults.describe())

    @app.delete("/faults")
    async def clear_faults() -> JSONResponse:
        faults.clear()
        return _ok({"rules": []})

    @app.post("/reset")
    async def reset(body: Reset | None = None) -> JSONResponse:
        faults.clear()
        store.reset(seed=(body or Reset()).seed)
        return _ok({"status": "reset"})

    return app


def serve(host: str, port: int, db_path: Path, *, log_level: str = "warning") -> None:
    """Run the mock IdP with uvicorn until interrupted (``stanch mock-idp``)."""
    import uvicorn

    uvicorn.run(create_app(db_path), host=host, port=port, log_level=log_level,
                access_log=False)
