"""``ssf_push_pending``: POST a push stream's queued SETs in order (RFC 8935).

202 (or any 2xx) marks a SET delivered, so a retry never sends it again. A 400 with an
RFC 8935 error is the receiver refusing that SET for good: it is marked refused with the
error (visible in ``stanch ssf streams``) and delivery moves on. Anything else (network,
5xx, 401/403/429) records the attempt and raises, and the workflow's retry policy backs
off and tries the same SET again, keeping order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from stanch.config import Settings
from stanch.logging import get_logger
from stanch.ssf.client import PUSH
from stanch.ssf.metrics import SSF_DELIVERIES
from stanch.ssf.store import DELIVERED, SsfStore

log = get_logger(__name__)
REFUSED = "refused"


class SsfActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: SsfStore | None = None

    @property
    def store(self) -> SsfStore:
        if self._store is None:
            self._store = SsfStore(self.settings.state_dir / "ssf.db")
        return self._store

    @activity.defn(name="ssf_push_pending")
    async def push_pending(self, stream_id: str) -> dict[str, Any]:
        stream = await asyncio.to_thread(self.store.stream, stream_id)
        if stream is None:
            return {"gone": True}
        delivery = stream.config.get("delivery", {})
        if delivery.get("method") != PUSH or stream.status != "enabled":
            return {"sent": 0, "held": stream.status}
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        if delivery.get("authorization_header"):
            headers["Authorization"] = delivery["authorization_header"]
        sent = 0
        async with httpx.AsyncClient(timeout=self.settings.ssf.push_timeout_seconds) as http:
            while True:
                batch = await asyncio.to_thread(self.store.pending, stream_id, 50)
                if not batch:
                    return {"sent": sent}
                # In order, one at a time; "delivered" marks are written once per batch
                # (one commit, not one per SET), and before anything is raised. A worker
                # killed mid-batch sends those SETs again: receivers deduplicate by jti.
                delivered: list[str] = []
                try:
                    for q in batch:
                        activity.heartbeat(q.seq)
                        if await self._send(http, delivery["endpoint_url"], headers,
                                            q.stream_id, q.jti, q.token):
                            delivered.append(q.jti)
                        sent += 1
                finally:
                    if delivered:
                        await asyncio.to_thread(self.store.mark, stream_id, delivered,
                                                DELIVERED)

    async def _send(self, http: httpx.AsyncClient, url: str, headers: dict[str, str],
                    stream_id: str, jti: str, token: str) -> bool:
        """POST one SET: True when the receiver took it (the caller marks it delivered),
        False when it refused it for good (marked here); raises to retry later."""
        try:
            resp = await http.post(url, content=token.encode(), headers=headers)
        except httpx.HTTPError as e:
            await self._failed(stream_id, jti, f"{type(e).__name__} posting to the receiver")
            raise ApplicationError(f"SET {jti} to stream {stream_id}: {type(e).__name__}"
                                   ) from None
        if 200 <= resp.status_code < 300:
            SSF_DELIVERIES.labels("delivered").inc()
            log.info("ssf.delivered", stream_id=stream_id, jti=jti, status=resp.status_code)
            return True
        err = _err(resp)
        if resp.status_code == 400 and err:
            await asyncio.to_thread(self.store.mark, stream_id, [jti], REFUSED,
                                    f"{err['err']}: {err.get('description', '')}"[:500])
            SSF_DELIVERIES.labels("refused").inc()
            log.warning("ssf.refused_by_receiver", stream_id=stream_id, jti=jti,
                        err=err["err"])
            return False
        await self._failed(stream_id, jti, f"receiver answered {resp.status_code}")
        raise ApplicationError(f"SET {jti} to stream {stream_id}: receiver answered "
                               f"{resp.status_code}")

    async def _failed(self, stream_id: str, jti: str, error: str) -> None:
        SSF_DELIVERIES.labels("retry").inc()
        await asyncio.to_thread(self.store.attempt_failed, stream_id, jti, error)


def _err(resp: httpx.Response) -> dict[str, str] | None:
    try:
        doc = resp.json()
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("err"), str):
        return {"err": doc["err"][:64], "description": str(doc.get("description", ""))[:300]}
    return None
