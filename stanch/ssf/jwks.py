"""A transmitter's signing keys, from its ``jwks_uri``; refetched once on an unknown ``kid``.

The refetch is what lets a transmitter rotate keys without telling us. A ``kid`` still
unknown after its refetch is remembered for ``negative_seconds``, so a stream of SETs with
made-up kids costs one fetch each, not one per SET.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from stanch.logging import get_logger
from stanch.ssf.set import SetError, Unavailable

log = get_logger(__name__)
_KEY_TYPE = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}


class RemoteJwks:
    def __init__(self, url: str, *, timeout: float = 5.0, cache_seconds: float = 3600.0,
                 negative_seconds: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.negative_seconds = negative_seconds
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._unknown: dict[str, float] = {}
        self._refetches: list[float] = []
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        if self._loaded_at is None or time.monotonic() - self._loaded_at > self.cache_seconds:
            await self._refresh()
        found = self._find(kid, alg)
        if found is None and kid is not None and self._may_refetch(kid):
            await self._refresh()
            found = self._find(kid, alg)
            if found is None:
                self._unknown[kid] = time.monotonic()
        if found is None:
            raise SetError("invalid_key", f"no key {kid!r} in the transmitter's JWKS")
        if found.key_type != _KEY_TYPE[alg]:
            raise SetError("invalid_key", f"key {kid!r} is not a {_KEY_TYPE[alg]} key")
        return found

    def _may_refetch(self, kid: str) -> bool:
        """Once per unknown kid, and at most 5 refetches a minute whatever the kids."""
        now = time.monotonic()
        seen = self._unknown.get(kid)
        if seen is not None and now - seen <= self.negative_seconds:
            return False
        self._refetches = [t for t in self._refetches if now - t < 60]
        if len(self._refetches) >= 5:
            return False
        self._refetches.append(now)
        return True

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        usable = [k for k in self._keys.values() if k.key_type == _KEY_TYPE[alg]]
        return usable[0] if len(usable) == 1 else None

    async def _refresh(self) -> None:
        async with self._lock:
            data = await self._fetch()
            self._keys = _parse(data)
            self._loaded_at = time.monotonic()
            self._unknown.clear()
            self.fetches += 1
            log.info("ssf.jwks_loaded", keys=len(self._keys), url=self.url)

    async def _fetch(self) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(self.url, headers={"Accept": "application/json"})
                resp.raise_for_status()
                return resp.json()
        except (httpx.HTTPError, ValueError) as e:
            log.warning("ssf.jwks_unavailable", url=self.url, error=type(e).__name__)
            raise Unavailable(f"the transmitter's JWKS at {self.url} could not be fetched "
                              f"({type(e).__name__})") from None


def _parse(data: Any) -> dict[str | None, jwt.PyJWK]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise SetError("invalid_key", "the transmitter's JWKS is not a key set")
    keys: dict[str | None, jwt.PyJWK] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK.from_dict(jwk)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
        keys[key.key_id] = key
    return keys
