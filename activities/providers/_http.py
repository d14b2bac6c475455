"""One small HTTP client for the REST adapters (SCIM, Okta, Microsoft Graph).

Read calls carry the read credential, writes the action credential. Transport failures,
429 and 5xx become :class:`TransientProviderError` with ``retry_after`` taken from the
provider's own header (each adapter passes its reader); other statuses a caller did not
expect become :class:`PermanentProviderError` naming the provider's error code. Header
values and bodies with credentials are never put into errors.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

from activities.providers.base import PermanentProviderError, TransientProviderError

RetryAfter = Callable[[httpx.Response], float | None]
ErrorCode = Callable[[httpx.Response], tuple[str | None, str]]
AuthHeaders = Callable[[bool], Awaitable[dict[str, str]]]


def retry_after_header(response: httpx.Response) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def rate_limit_reset(response: httpx.Response) -> float | None:
    """Okta's ``X-Rate-Limit-Reset``: the epoch second the window resets."""
    value = response.headers.get("X-Rate-Limit-Reset")
    if not value:
        return retry_after_header(response)
    try:
        return max(1.0, float(value) - time.time())
    except ValueError:
        return None


def json_error(response: httpx.Response) -> tuple[str | None, str]:
    """A generic (code, message) reader; adapters pass richer ones."""
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("scimType") or body.get("code")
        msg = body.get("errorSummary") or body.get("detail") or body.get("message") or ""
        return (str(code) if code else None), str(msg)
    return None, response.reason_phrase


class HttpApi:
    def __init__(self, provider: str, base_url: str, *, read_headers: dict[str, str],
                 action_headers: dict[str, str], retry_after: RetryAfter = retry_after_header,
                 error_code: ErrorCode = json_error, timeout: float = 20.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 default_headers: dict[str, str] | None = None,
                 auth: AuthHeaders | None = None) -> None:
        self.provider = provider
        self._read_headers = read_headers
        self._action_headers = action_headers
        self._retry_after = retry_after
        self._error_code = error_code
        self._auth = auth  # per-request headers (e.g. an OAuth token that expires)
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                         transport=transport, headers=default_headers or {})

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, *, write: bool = False,
                      expect: Iterable[int] = (200,), what: str = "",
                      headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """Send one request; return the response when its status is in ``expect``."""
        what = what or f"{method} {path}"
        auth = (await self._auth(write) if self._auth is not None
                else self._action_headers if write else self._read_headers)
        try:
            response = await self._client.request(method, path, headers={**auth,
                                                  **(headers or {})}, **kwargs)
        except httpx.TransportError as err:
            raise TransientProviderError(f"{what}: cannot reach {self.provider} "
                                         f"({type(err).__name__})", provider=self.provider,
                                         code=type(err).__name__) from None
        if response.status_code in set(expect):
            return response
        code, message = self._error_code(response)
        detail = f"{what}: {message or response.reason_phrase}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientProviderError(detail, provider=self.provider,
                                         status=response.status_code, code=code,
                                         retry_after=self._retry_after(response))
        raise PermanentProviderError(detail, provider=self.provider,
                                     status=response.status_code, code=code)


def seg(value: object) -> str:
    """One URL path segment, quoted: an id from the inventory or a provider (``a/../b``,
    ``x?y``, ``%2e``) can never change which resource a call reaches."""
    return quote(str(value), safe="")
