"""Managing Stanch's streams at a transmitter: connect, verify, pause/enable, poll.

``connect`` discovers the transmitter (issuer checked), creates the stream — push to
``<public url>/v1/ssf/push/<name>`` with the first configured push token, or poll — and
keeps its id, ``aud`` and delivery in the SSF store. ``verify`` asks for a verification
event with a random ``state`` the receiver then matches. :class:`Poller` drains a poll
stream (RFC 8936): it acknowledges each SET only after its effect is in place, reports
refusals as ``setErrs``, and keeps its pending acknowledgements in the store, so a restart
neither loses a SET nor applies one twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from stanch.audit import AuditStore
from stanch.logging import get_logger
from stanch.models import AuditEvent, AuditType
from stanch.ssf.client import SsfClientError, TransmitterClient, discover, sleep
from stanch.ssf.receiver import Receiver
from stanch.ssf.set import SetError, Unavailable

log = get_logger(__name__)

Handler = Callable[[str, str, str], Awaitable[None]]
"""``(name, token, via) -> None``: accept one SET and apply its effect; raises SetError."""


async def open_client(receiver: Receiver, name: str) -> TransmitterClient:
    cfg = receiver.config(name)
    meta = await discover(cfg)
    return TransmitterClient(cfg, meta, token=receiver.tokens.get(name))


@asynccontextmanager
async def session(receiver: Receiver, name: str) -> AsyncIterator[TransmitterClient]:
    """A client for one management exchange; failures and token refreshes are audited."""
    client: TransmitterClient | None = None
    try:
        client = await open_client(receiver, name)
        yield client
    except SsfClientError as e:
        await _audit(receiver.audit, name, "transmitter call failed", {"error": str(e)[:300]})
        raise
    finally:
        if client is not None:
            if client.token:
                receiver.tokens[name] = client.token
            if client.token_refreshes:
                await _audit(receiver.audit, name, "access token refreshed after a 401",
                             {"refreshes": client.token_refreshes})
            await client.aclose()


async def _audit(audit: AuditStore, name: str, what: str, data: dict[str, Any]) -> None:
    await asyncio.to_thread(audit.append, AuditEvent(
        type=AuditType.ssf_stream, at=datetime.now(UTC), actor=f"ssf:{name}", reason=what,
        data={"transmitter": name, **data}))


async def connect(receiver: Receiver, name: str, push_base: str) -> dict[str, Any]:
    cfg = receiver.config(name)
    async with session(receiver, name) as client:
        remote = await asyncio.to_thread(receiver.store.remote, name)
        if remote.get("stream_id"):
            try:
                stream = await client.read_stream(remote["stream_id"])
            except SsfClientError:
                stream = None
            if stream is not None:
                await asyncio.to_thread(receiver.store.save_remote, name, config=stream)
                return stream
        push_url = f"{push_base.rstrip('/')}/v1/ssf/push/{name}" \
            if cfg.delivery == "push" else None
        token = cfg.push_tokens[0].get_secret_value() if cfg.push_tokens else None
        stream = await client.create_stream(push_url=push_url, push_token=token)
        await asyncio.to_thread(receiver.store.save_remote, name, stream_id=stream["stream_id"],
                                config=stream, status="enabled", state=None, verified_at=None)
        await _audit(receiver.audit, name, "stream created",
                     {"stream_id": stream["stream_id"], "delivery": cfg.delivery,
                      "events_delivered": stream.get("events_delivered")})
        return stream


async def verify(receiver: Receiver, name: str) -> str:
    remote = await asyncio.to_thread(receiver.store.remote, name)
    if not remote.get("stream_id"):
        raise SsfClientError(f"no stream at {name!r} yet: run `stanch ssf connect {name}`")
    async with session(receiver, name) as client:
        state = await client.verify(remote["stream_id"])
    await asyncio.to_thread(receiver.store.save_remote, name, state=state)
    await _audit(receiver.audit, name, "verification requested",
                 {"stream_id": remote["stream_id"]})
    return state


async def set_status(receiver: Receiver, name: str, status: str) -> dict[str, Any]:
    remote = await asyncio.to_thread(receiver.store.remote, name)
    if not remote.get("stream_id"):
        raise SsfClientError(f"no stream at {name!r} yet: run `stanch ssf connect {name}`")
    async with session(receiver, name) as client:
        answer = await client.set_status(remote["stream_id"], status)
    await asyncio.to_thread(receiver.store.save_remote, name, status=answer.get("status"))
    await _audit(receiver.audit, name, f"stream {status}", {"stream_id": remote["stream_id"]})
    return answer


class Poller:
    def __init__(self, receiver: Receiver, name: str, handle: Handler) -> None:
        self.receiver = receiver
        self.name = name
        self.handle = handle
        self.cfg = receiver.config(name)
        self._key = f"poll_acks:{name}"

    def _pending(self) -> tuple[list[str], dict[str, dict[str, str]]]:
        doc = json.loads(self.receiver.store.get_meta(self._key, "{}") or "{}")
        return list(doc.get("ack", [])), dict(doc.get("setErrs", {}))

    def _save(self, ack: list[str], errs: dict[str, dict[str, str]]) -> None:
        self.receiver.store.set_meta(self._key, json.dumps({"ack": ack, "setErrs": errs}))

    async def once(self, client: TransmitterClient, endpoint_url: str) -> bool:
        """One poll round; True when the transmitter has more."""
        ack, errs = await asyncio.to_thread(self._pending)
        sets, more = await client.poll(endpoint_url, ack=ack, set_errs=errs,
                                       max_events=self.cfg.max_events)
        ack, errs = [], {}
        await asyncio.to_thread(self._save, ack, errs)  # the transmitter has them now
        for jti, token in sets.items():
            try:
                await self.handle(self.name, token, "poll")
            except SetError as e:
                errs[jti] = e.body()
            else:
                ack.append(jti)
            await asyncio.to_thread(self._save, ack, errs)
        return more or bool(sets)

    async def run(self, stop: asyncio.Event) -> None:
        client: TransmitterClient | None = None
        while not stop.is_set():
            try:
                if client is None:
                    client = await open_client(self.receiver, self.name)
                remote = await asyncio.to_thread(self.receiver.store.remote, self.name)
                url = (remote.get("config") or {}).get("delivery", {}).get("endpoint_url")
                if not url:
                    raise SsfClientError(f"no poll stream at {self.name!r}: run `stanch ssf "
                                         f"connect {self.name}`")
                if await self.once(client, url):
                    continue
            except (SsfClientError, SetError, Unavailable) as e:
                log.warning("ssf.poll_failed", transmitter=self.name, error=str(e)[:300])
            except Exception as e:  # a poller never dies of one bad round
                log.error("ssf.poll_error", transmitter=self.name,
                          error=f"{type(e).__name__}: {str(e)[:200]}")
            if await sleep(self.cfg.poll_interval_seconds, stop):
                break
        if client is not None:
            await client.aclose()
