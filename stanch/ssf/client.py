"""The receiver's side of stream management (SSF sections 7 and 8), and the RFC 8936 poller.

Every call goes to the endpoints the transmitter's metadata names, after checking that the
metadata's ``issuer`` is the one configured (a transmitter answering for another issuer is
refused before any stream is made). Access tokens come from the configuration or from the
token endpoint (client credentials); a 401 fetches a fresh one and retries once, so an
expired token mid-stream is not an outage.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx

from stanch.logging import get_logger
from stanch.ssf import events
from stanch.ssf.config import SsfTransmitterConfig

log = get_logger(__name__)
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"


class SsfClientError(Exception):
    """A transmitter call failed; the message says which call and why (never a token)."""


async def discover(cfg: SsfTransmitterConfig, *, timeout: float = 10.0) -> dict[str, Any]:
    from stanch.ssf.receiver import metadata_url

    url = cfg.metadata_url or metadata_url(cfg.issuer)
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            resp = await http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            meta = resp.json()
    except (httpx.HTTPError, ValueError) as e:
        raise SsfClientError(f"metadata {url}: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(meta, dict):
        raise SsfClientError(f"metadata {url}: not a JSON object")
    if meta.get("issuer") != cfg.issuer:
        raise SsfClientError(f"metadata {url}: issuer {str(meta.get('issuer'))[:200]!r} is "
                             f"not the configured issuer {cfg.issuer!r}; refusing the stream")
    return meta


class TransmitterClient:
    def __init__(self, cfg: SsfTransmitterConfig, meta: dict[str, Any], *,
                 token: str | None = None, timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.meta = meta
        self._http = httpx.AsyncClient(timeout=timeout)
        self._token: str | None = token or (cfg.access_token.get_secret_value()
                                            if cfg.access_token else None)
        self.token_fetches = 0
        self.token_refreshes = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def token(self) -> str | None:
        """The access token in use, to hand to the next client (never logged)."""
        return self._token

    async def _fresh_token(self) -> str | None:
        cfg = self.cfg
        if not cfg.token_url or not cfg.client_id or cfg.client_secret is None:
            return self._token
        try:
            resp = await self._http.post(cfg.token_url, data={
                "grant_type": "client_credentials", "scope": cfg.scope},
                auth=(cfg.client_id, cfg.client_secret.get_secret_value()))
        except httpx.HTTPError as e:
            raise SsfClientError(f"token endpoint {cfg.token_url}: {type(e).__name__}"
                                 ) from None
        if resp.status_code != 200:
            raise SsfClientError(f"token endpoint {cfg.token_url} answered "
                                 f"{resp.status_code}")
        try:
            token = resp.json().get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            raise SsfClientError(f"token endpoint {cfg.token_url} returned no access_token")
        self.token_fetches += 1
        self._token = token
        return token

    async def call(self, method: str, endpoint: str, **kw: Any) -> httpx.Response:
        url = self.meta.get(endpoint)
        if not isinstance(url, str):
            raise SsfClientError(f"the transmitter's metadata has no {endpoint}")
        if self._token is None:
            await self._fresh_token()
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                resp = await self._http.request(method, url, headers=headers, **kw)
            except httpx.HTTPError as e:
                raise SsfClientError(f"{method} {url}: {type(e).__name__}") from None
            if resp.status_code == 401 and attempt == 1 and self.cfg.token_url:
                log.info("ssf.token_refresh", endpoint=endpoint)
                self.token_refreshes += 1
                await self._fresh_token()
                continue
            return resp
        raise AssertionError("unreachable")

    async def _json(self, method: str, endpoint: str, ok: tuple[int, ...], **kw: Any) -> Any:
        resp = await self.call(method, endpoint, **kw)
        if resp.status_code not in ok:
            raise SsfClientError(f"{method} {endpoint}: {resp.status_code} "
                                 f"{resp.text[:200]}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise SsfClientError(f"{method} {endpoint}: the answer is not JSON") from None

    async def _obj(self, method: str, endpoint: str, ok: tuple[int, ...], **kw: Any
                   ) -> dict[str, Any]:
        doc = await self._json(method, endpoint, ok, **kw)
        if not isinstance(doc, dict):
            raise SsfClientError(f"{method} {endpoint}: the answer is not a JSON object")
        return doc

    # ------------------------------------------------------------------ streams
    async def create_stream(self, *, push_url: str | None, push_token: str | None,
                            description: str = "Stanch") -> dict[str, Any]:
        wanted = self.cfg.events_requested or sorted(events.ALERT_EVENTS)
        body: dict[str, Any] = {"events_requested": wanted, "description": description}
        if push_url:
            body["delivery"] = {"method": PUSH, "endpoint_url": push_url}
            if push_token:
                body["delivery"]["authorization_header"] = f"Bearer {push_token}"
        else:
            body["delivery"] = {"method": POLL}
        stream = await self._json("POST", "configuration_endpoint", (200, 201), json=body)
        self._check_stream(stream)
        return dict(stream)

    async def read_stream(self, stream_id: str) -> dict[str, Any]:
        stream = await self._json("GET", "configuration_endpoint", (200,),
                                  params={"stream_id": stream_id})
        if isinstance(stream, list):
            stream = next((s for s in stream if s.get("stream_id") == stream_id), None)
        self._check_stream(stream)
        return dict(stream)

    def _check_stream(self, stream: Any) -> None:
        if not isinstance(stream, dict) or not isinstance(stream.get("stream_id"), str):
            raise SsfClientError("the transmitter's stream answer has no stream_id")
        if stream.get("iss") != self.cfg.issuer:
            raise SsfClientError(f"stream iss {str(stream.get('iss'))[:200]!r} is not the "
                                 f"configured issuer {self.cfg.issuer!r}")

    async def delete_stream(self, stream_id: str) -> None:
        await self._json("DELETE", "configuration_endpoint", (200, 204),
                         params={"stream_id": stream_id})

    async def status(self, stream_id: str) -> dict[str, Any]:
        return await self._obj("GET", "status_endpoint", (200,), params={"stream_id": stream_id})

    async def set_status(self, stream_id: str, status: str, reason: str = "") -> dict[str, Any]:
        body = {"stream_id": stream_id, "status": status}
        if reason:
            body["reason"] = reason
        return await self._obj("POST", "status_endpoint", (200,), json=body)

    async def verify(self, stream_id: str) -> str:
        """Ask for a verification event; returns the random ``state`` to expect back."""
        state = secrets.token_urlsafe(24)
        await self._json("POST", "verification_endpoint", (200, 202, 204),
                         json={"stream_id": stream_id, "state": state})
        return state

    # ------------------------------------------------------------------ poll
    async def poll(self, endpoint_url: str, *, ack: list[str],
                   set_errs: dict[str, dict[str, str]], max_events: int,
                   return_immediately: bool = True) -> tuple[dict[str, str], bool]:
        body: dict[str, Any] = {"maxEvents": max_events,
                                "returnImmediately": return_immediately}
        if ack:
            body["ack"] = ack
        if set_errs:
            body["setErrs"] = set_errs
        self.meta.setdefault("_poll", endpoint_url)
        resp = await self.call("POST", "_poll", json=body)
        if resp.status_code != 200:
            raise SsfClientError(f"poll {endpoint_url}: {resp.status_code} {resp.text[:200]}")
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        sets = doc.get("sets") if isinstance(doc, dict) else None
        if not isinstance(sets, dict):
            raise SsfClientError(f"poll {endpoint_url}: answer has no `sets` object")
        assert isinstance(doc, dict)
        return ({str(k): str(v) for k, v in sets.items()},
                bool(doc.get("moreAvailable", False)))


def now() -> float:
    return time.time()


async def sleep(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep unless ``stop`` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
