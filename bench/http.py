"""The bench's HTTP client: aiohttp, a thin layer over it, and nothing else.

The load generator shares this machine's cores with what it measures, so it should cost as
little as it can: aiohttp's C-accelerated parser spends about a third of the CPU per
request that httpx does (the floor's load generator, a Temporal client, is Rust). What a
client costs changes how much CPU is left for Stanch, not what any figure means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

RETRYABLE = (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError)


@dataclass
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:300]}")


class Http:
    def __init__(self, *, connections: int = 200, timeout: float = 60.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._connections = connections
        self._timeout = timeout

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    async def get(self, url: str, *, params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> Answer:
        async with self.session.get(url, params=params, headers=headers) as r:
            return Answer(r.status, await r.text())

    async def post(self, url: str, *, json: Any = None,
                   headers: dict[str, str] | None = None) -> Answer:
        async with self.session.post(url, json=json, headers=headers) as r:
            return Answer(r.status, await r.text())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
