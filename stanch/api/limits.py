"""One body limit for the whole app, as an ASGI middleware in front of everything.

Checked on the declared ``Content-Length`` (refused before a byte of body is read) and
while streaming (a chunked or lying body is cut off as soon as it passes the limit), before
authentication and parsing, so an anonymous caller cannot make the API hold more than one
limit's worth per request. A body that does not arrive within ``timeout`` seconds is
answered 408 and its connection released.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stanch.api.problems import MEDIA_TYPE, problem_response
from stanch.logging import get_logger
from stanch.metrics import BODIES_REFUSED

log = get_logger("stanch.api.limits")


class BodyRefused(HTTPException):
    """Raised from ``receive`` mid-stream; an HTTPException so FastAPI's body parsing
    passes it through instead of answering 400."""


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, f"body is {declared} bytes; the limit is "
                               f"{self.max_bytes} (api.max_body_bytes)")
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._limited(receive), send_tracking)
        except BodyRefused as err:
            if not started:
                await self._refuse(send, err.status_code, err.detail)

    def _limited(self, receive: Receive) -> Receive:
        size = 0
        done = False
        deadline = time.monotonic() + self.timeout

        async def limited() -> Message:
            nonlocal size, done
            if done:  # the body is in: later reads wait for a disconnect, unbounded
                return await receive()
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except TimeoutError:
                raise BodyRefused(408, f"the request body did not arrive within "
                                       f"{self.timeout:g} s (api.body_timeout_seconds)"
                                  ) from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    raise BodyRefused(413, f"body exceeds the limit of {self.max_bytes} "
                                           "bytes (api.max_body_bytes)")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return limited

    async def _refuse(self, send: Send, status: int, reason: str) -> None:
        BODIES_REFUSED.labels(str(status)).inc()
        log.info("request.body_refused", status=status, reason=reason)
        # The codes the app's own handler gives a BodyRefused: too_large, request_timeout.
        response = problem_response(status, reason)
        body = response.body
        headers: list[Any] = [(b"content-type", MEDIA_TYPE.encode()),
                              (b"content-length", str(len(body)).encode()),
                              (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else 1 << 62
    return None
