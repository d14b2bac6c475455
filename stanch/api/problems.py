"""One error shape for every error the API answers: RFC 9457 problem details.

Every 4xx and 5xx body is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` (what happened, for people) and ``code`` (a short, fixed label for
programs). A request that fails validation adds ``errors``: one entry per field, named as
``body.reason`` or ``query.limit``. FastAPI's and Starlette's own errors (validation, 404
for unknown paths, 405) are rewritten into the same shape here.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from stanch.audit.base import UnstorableRecord

MEDIA_TYPE = "application/problem+json"
_FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "request_timeout", 409: "conflict",
          413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
          429: "too_many_requests", 503: "unavailable"}


class FieldProblem(BaseModel):
    """One field of the request that was refused."""

    field: str = Field(description="Where: `body.reason`, `query.limit`, `path.workflow_id`.")
    message: str = Field(description="What is wrong with it.")
    type: str = Field(description="A fixed label for the kind of problem, e.g. `missing`.")


class Problem(BaseModel):
    """An error (RFC 9457 problem details), served as ``application/problem+json``."""

    type: str = Field(default="about:blank", description="A URI naming the problem type.")
    title: str = Field(description="The HTTP status phrase, e.g. `Not Found`.")
    status: int = Field(ge=400, le=599, description="The HTTP status code, repeated.")
    detail: str = Field(description="What happened and what to do next, for people.")
    code: str = Field(description="A short, fixed label for programs, e.g. `not_found`, "
                                  "`DecisionRefused`, `invalid_json`.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="For a refused request: each field and what is wrong.")


def _safe(text: str) -> str:
    """Text that can be sent: an unpaired surrogate from the request becomes ``\\udXXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_response(status: int, detail: str, *, code: str | None = None,
                     headers: dict[str, str] | None = None,
                     errors: list[FieldProblem] | None = None) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = Problem(title=title, status=status, detail=_safe(detail),
                   code=_safe(code or _CODES.get(status, "error")), errors=errors)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        headers=headers, media_type=MEDIA_TYPE)


def _field_problems(err: RequestValidationError) -> list[FieldProblem]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ())]
        msg = str(e.get("msg", "invalid"))
        ctx = e.get("ctx") or {}
        if e.get("type") == "value_error" and isinstance(ctx.get("error"), ValueError):
            msg = str(ctx["error"])
        out.append(FieldProblem(field=_safe(".".join(loc) or "request"), message=_safe(msg),
                                type=_safe(str(e.get("type", "invalid")))))
    return out


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (several routes may share one)."""
    methods: set[str] = set()
    for route in routing.iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(route.methods or ())
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = (f"{request.method} is not served at {request.url.path}; "
                  f"allowed: {', '.join(allowed)}")
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"nothing is served at {request.url.path}"
    elif exc.status_code == 400 and detail == _FASTAPI_UNREADABLE_BODY:
        # A body that is not UTF-8: unparseable, like any other JSON that does not parse.
        return problem_response(422, "body is not JSON Stanch can read: send UTF-8 JSON",
                                code="invalid_json")
    return problem_response(exc.status_code, detail, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_problems(exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    return problem_response(422, detail, errors=errors)


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnstorableRecord)
    return problem_response(422, f"the request holds text Stanch cannot store: {exc}",
                            code="unstorable_text")


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnstorableRecord, _unstorable)


def problem_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each a :class:`Problem`. ``described`` maps
    ``s404="…"`` to a description of when that status is answered."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *(int(k[1:]) for k in described)}):
        out[status] = {
            "description": described.get(f"s{status}") or HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out
