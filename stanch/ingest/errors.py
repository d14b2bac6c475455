"""Errors of ingestion: each carries the HTTP status the API answers with and a reason.

``reason`` is for people (it goes into the 4xx body and the log); ``code`` is a short,
fixed label for metrics, so a hostile sender cannot grow the label set.
"""

from __future__ import annotations


class IngestError(Exception):
    """A webhook delivery that Stanch refuses; ``status`` is the HTTP status to answer."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.reason


class PayloadTooLarge(IngestError):
    status = 413
    code = "too_large"


class UnknownSource(IngestError):
    status = 404
    code = "unknown_source"


class AuthError(IngestError):
    """Missing or bad credentials; the reason says which, never the secret."""

    status = 401
    code = "auth"


class InvalidPayload(IngestError):
    """The body is not JSON Stanch can read (bad encoding, syntax, nesting)."""

    status = 422
    code = "invalid_json"


class NormalizeError(IngestError):
    """The JSON is readable but a field the source's format requires is missing or invalid.

    ``where`` is a JSON path into the payload (``context.alerts[0].kibana.alert.uuid``) and
    ``what`` is ``missing`` or ``invalid: …``.
    """

    status = 422
    code = "normalize"

    def __init__(self, where: str, what: str) -> None:
        self.where = where or "$"
        self.what = what
        super().__init__(f"{self.where}: {what}")
