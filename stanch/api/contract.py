"""The OpenAPI document, made to tell the truth about the server.

FastAPI derives paths, parameters and bodies from the routes; this module adds what it
cannot see: who may call each operation (operator tokens, source credentials, Slack
signatures), the problem-details shape of every error (FastAPI's own 422 included), 401
and 403 wherever a role is required, and links between operations for stateful clients.
``docs/openapi.json`` is this document (``python -m stanch.api.contract`` writes it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from stanch.api.problems import MEDIA_TYPE, FieldProblem, Problem, problem_responses

OPERATOR = "operatorToken"
SOURCE_SCHEMES = ("sourceBearer", "sourceBasic", "sourceUrlToken", "standardWebhooks",
                  "githubSignature", "hmacSignature")
SLACK = "slackSignature"
PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    OPERATOR: {
        "type": "http", "scheme": "bearer",
        "description": "An operator's API token (`stanch token mint`, stored as its SHA-256 "
                       "in `api_tokens`) or an OIDC JWT from the configured issuer. The "
                       "role each operation needs is in its 403 response.",
    },
    "sourceBearer": {
        "type": "http", "scheme": "bearer",
        "description": "Alert sources in `bearer` mode: one of `sources.<source>.secrets`.",
    },
    "sourceBasic": {
        "type": "http", "scheme": "basic",
        "description": "Alert sources in `bearer` mode, for senders that only speak Basic "
                       "(Kibana): any user name, the source token as password.",
    },
    "sourceUrlToken": {
        "type": "apiKey", "in": "query", "name": "token",
        "description": "Alert sources in `url_token` mode (Splunk cannot set headers).",
    },
    "standardWebhooks": {
        "type": "apiKey", "in": "header", "name": "webhook-signature",
        "description": "Alert sources in `standard_webhooks` mode: `v1,<base64 HMAC-SHA256>` "
                       "over `webhook-id.webhook-timestamp.body` with a `whsec_` secret; the "
                       "timestamp must lie in the replay window, the id must be new.",
    },
    "githubSignature": {
        "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
        "description": "Alert sources in `github` mode: `sha256=<hex HMAC-SHA256 of the raw "
                       "body>`.",
    },
    "hmacSignature": {
        "type": "apiKey", "in": "header", "name": "X-Signature",
        "description": "Alert sources in `hmac` mode: hex HMAC-SHA256 of the raw body (or of "
                       "`timestamp.body` when the source names a timestamp header).",
    },
    "ssfPushToken": {
        "type": "http", "scheme": "bearer",
        "description": "The SSF push receiver: one of `ssf.transmitters.<name>.push_tokens`, "
                       "when that transmitter has any (RFC 8935 §2: the transmitter's "
                       "`authorization_header`).",
    },
    SLACK: {
        "type": "apiKey", "in": "header", "name": "X-Slack-Signature",
        "description": "Slack's request signature: `v0=<hex HMAC-SHA256>` with the app's "
                       "signing secret over `v0:<X-Slack-Request-Timestamp>:<raw body>`.",
    },
}


def _roles(dependant: Dependant) -> Iterator[str]:
    """Roles required by ``require(...)`` dependencies anywhere under ``dependant``."""
    for dep in dependant.dependencies:
        name = getattr(dep.call, "__name__", "")
        if name.startswith("require_"):
            yield name.removeprefix("require_")
        yield from _roles(dep)


def _operation_security(route: Any, op: dict[str, Any]) -> None:
    roles = sorted(set(_roles(route.dependant)))
    if roles:
        op["security"] = [{OPERATOR: []}]
        op["responses"].update({str(k): v for k, v in problem_responses(
            s401="No token, or one that is unknown, expired or badly signed "
                 "(`WWW-Authenticate: Bearer`).",
            s403=f"The principal lacks the {', '.join(f'`{r}`' for r in roles)} role."
        ).items() if str(k) not in op["responses"] or k == 401})
    elif "security" not in op:
        op["security"] = []  # open: health checks


def _own_error_shape(response: dict[str, Any]) -> bool:
    """A response that names its own schema keeps it (the SSF push receiver answers
    RFC 8935 ``{"err", "description"}``); FastAPI's default 422 is replaced."""
    refs = [c.get("schema", {}).get("$ref", "") for c in response.get("content", {}).values()]
    return any(r and not r.endswith(("/HTTPValidationError", "/Problem")) for r in refs)


def _problem_everywhere(op: dict[str, Any]) -> None:
    if "requestBody" in op:
        op["responses"].setdefault("413", problem_responses(
            s413="The body is larger than `api.max_body_bytes`.")[413])
    for status, response in op["responses"].items():
        if not str(status).startswith(("4", "5")) or _own_error_shape(response):
            continue
        response["content"] = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if status == "422":
            response["description"] = ("The request was refused: a parameter or field is "
                                        "missing, out of range, or not valid text; `errors` "
                                        "names each one.")


def _name_sources(doc: dict[str, Any]) -> None:
    """The alert route's ``{source}``: the sources Stanch can read (another is a 404)."""
    from stanch.ingest.auth import MANUAL_SOURCE
    from stanch.ingest.registry import SOURCES

    op = doc.get("paths", {}).get("/v1/alerts/{source}", {}).get("post", {})
    for param in op.get("parameters", []):
        if param["name"] == "source" and param["in"] == "path":
            param["schema"] = {"type": "string", "title": "Source",
                               "enum": sorted(set(SOURCES) - {MANUAL_SOURCE})}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes, tags=app.openapi_tags, servers=app.servers)
    routes = {(r.path_format, m.lower()): r for r in routing.iter_route_contexts(app.routes)
              if getattr(r, "dependant", None) is not None for m in (r.methods or ())}
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            route = routes.get((path, method))
            if route is not None:
                _operation_security(route, op)
            _problem_everywhere(op)
    _name_sources(doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for model in (Problem, FieldProblem):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}")
        schemas[model.__name__].pop("$defs", None)
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build_openapi`'s document at ``/openapi.json`` (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def published(app: FastAPI) -> str:
    """The document as committed in ``docs/openapi.json``: sorted keys, two-space indent."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def reference_app() -> FastAPI:
    """The app as ``docs/openapi.json`` describes it: default settings, nothing started."""
    import tempfile

    from stanch.api.app import create_app
    from stanch.config import Settings

    state = Path(tempfile.mkdtemp(prefix="stanch-openapi-"))
    repo = Path(__file__).resolve().parents[2]
    settings = Settings(state_dir=state, playbooks_dir=repo / "playbooks",
                        inventory_paths=[repo / "inventory"],
                        _env_file=None)  # type: ignore[call-arg]
    return create_app(settings)


def main(argv: list[str]) -> int:
    """``python -m stanch.api.contract [PATH]``: write the document (default docs/openapi.json)."""
    target = Path(argv[0]) if argv else PUBLISHED
    target.write_text(published(reference_app()))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
