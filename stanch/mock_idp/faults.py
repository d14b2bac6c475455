"""Fault injection: latency, errors, rate limits and hangs, applied before any handler runs.

A faulted request never reaches a handler, so it changes nothing. Decisions draw from one
``random.Random`` that ``POST /faults {"seed": n}`` reseeds, so a test run is repeatable.
The control endpoints (``/faults``, ``/reset``, ``/healthz``) are never faulted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CONTROL_PREFIXES = ("/faults", "/reset", "/healthz")
_IDENTITY_PATH = re.compile(r"^/identities/([^/]+)")

_CODES = {
    400: "BadRequest", 401: "Unauthorized", 403: "AccessDenied", 404: "NoSuchEntity",
    409: "Conflict", 429: "Throttling", 500: "InternalFailure", 502: "BadGateway",
    503: "ServiceUnavailable", 504: "GatewayTimeout",
}


class FaultRule(BaseModel):
    """One rule. Matching requests get ``latency_ms``, then maybe a hang or an error."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=600_000, description="Delay every match.")
    reply_latency_ms: int = Field(
        default=0, ge=0, le=600_000,
        description="Delay the answer after the request was handled: the write happened, "
                    "its reply is slow (a lost or late response).",
    )
    status: int | None = Field(default=None, ge=400, le=599, description="Error to answer.")
    error_rate: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Chance of answering `status`; defaults to 1.0 when `status` is set.",
    )
    retry_after: float | None = Field(default=None, ge=0, description="Retry-After seconds.")
    timeout_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Chance of hanging `hang_ms` then answering 504 (a client timeout).",
    )
    hang_ms: int = Field(default=10_000, ge=0, le=600_000)
    identity: str | None = Field(default=None, description="Only requests for this identity.")
    path: str | None = Field(default=None, description="Only paths matching this regex.")
    methods: list[str] | None = Field(default=None, description="Only these HTTP methods.")
    count: int | None = Field(default=None, ge=1, description="Apply at most this many times.")
    seed: int | None = Field(default=None, description="Reseed the fault RNG.")

    @field_validator("path")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"not a valid regex: {err}") from None
        return v

    @field_validator("methods")
    @classmethod
    def _upper(cls, v: list[str] | None) -> list[str] | None:
        return [m.upper() for m in v] if v is not None else None


class FaultSet(BaseModel):
    """``POST /faults`` body: several rules at once, and an optional seed."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)
    seed: int | None = None


@dataclass
class _Active:
    id: int
    rule: FaultRule
    path_re: re.Pattern[str] | None
    remaining: int | None
    applied: int = 0

    def matches(self, method: str, path: str, identity: str | None) -> bool:
        r = self.rule
        if r.methods is not None and method not in r.methods:
            return False
        if r.identity is not None and r.identity != identity:
            return False
        return self.path_re is None or self.path_re.search(path) is not None

    def describe(self) -> dict[str, Any]:
        body = self.rule.model_dump(exclude_none=True, exclude={"seed"})
        return {"id": self.id, **body, "remaining": self.remaining, "applied": self.applied}


@dataclass
class Decision:
    latency_s: float = 0.0
    reply_latency_s: float = 0.0
    hang_s: float | None = None
    status: int | None = None
    retry_after: float | None = None


@dataclass
class Faults:
    """The active rules. Used from the event loop only, so it needs no lock."""

    rules: list[_Active] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    _next_id: int = 1

    def add(self, rules: list[FaultRule], seed: int | None = None) -> list[dict[str, Any]]:
        seeds = [seed, *(r.seed for r in rules)]
        for s in seeds:
            if s is not None:
                self.rng.seed(s)
        added = []
        for rule in rules:
            active = _Active(
                id=self._next_id,
                rule=rule,
                path_re=re.compile(rule.path) if rule.path else None,
                remaining=rule.count,
            )
            self._next_id += 1
            self.rules.append(active)
            added.append(active.describe())
        return added

    def clear(self) -> None:
        self.rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [a.describe() for a in self.rules]

    def decide(self, method: str, path: str) -> Decision | None:
        m = _IDENTITY_PATH.match(path)
        identity = m.group(1) if m else None
        decision: Decision | None = None
        for active in list(self.rules):
            if not active.matches(method, path, identity):
                continue
            r = active.rule
            took = r.latency_ms > 0 or r.reply_latency_ms > 0
            d = decision or Decision()
            d.latency_s += r.latency_ms / 1000.0
            d.reply_latency_s += r.reply_latency_ms / 1000.0
            if d.status is None and d.hang_s is None:
                if r.timeout_rate and self.rng.random() < r.timeout_rate:
                    d.hang_s, took = r.hang_ms / 1000.0, True
                else:
                    rate = r.error_rate if r.error_rate is not None else (
                        1.0 if r.status is not None else 0.0)
                    if rate and self.rng.random() < rate:
                        d.status, d.retry_after, took = r.status or 503, r.retry_after, True
            if took:
                decision = d
                active.applied += 1
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        self.rules.remove(active)
        return decision


def _retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


async def _send_error(send: Send, status: int, retry_after: float | None, why: str) -> None:
    code = _CODES.get(status, "InjectedFault")
    body = json.dumps({"error": code, "message": f"injected fault: {why}"}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", _retry_after_header(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    """Pure ASGI middleware: with no rules active it costs one attribute check."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.faults.rules:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(_CONTROL_PREFIXES):
            await self.app(scope, receive, send)
            return
        decision = self.faults.decide(scope["method"], path)
        if decision is None:
            await self.app(scope, receive, send)
            return
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if decision.hang_s is not None:
            await asyncio.sleep(decision.hang_s)
            await _send_error(send, 504, None, "timeout")
            return
        if decision.status is not None:
            await _send_error(send, decision.status, decision.retry_after, "error")
            return
        if decision.reply_latency_s:
            delay = decision.reply_latency_s

            async def late_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await asyncio.sleep(delay)
                await send(message)

            await self.app(scope, receive, late_send)
            return
        await self.app(scope, receive, send)
