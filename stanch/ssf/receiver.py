"""The receiving side: one SET from a configured transmitter → validated → what it means.

:meth:`Receiver.accept` is shared by push (``POST /v1/ssf/push/{name}``) and the poller.
It validates the SET (``stanch.ssf.set.validate`` against the transmitter's JWKS), then:

- a verification event is matched against the ``state`` Stanch asked for (a wrong state
  is refused; one Stanch never asked for is accepted and recorded as unsolicited);
- a stream-updated event records the transmitter's new stream status;
- a CAEP/RISC event becomes an :class:`~stanch.models.Alert` via the ``ssf`` normalizer,
  and the caller sends it down the ordinary path (audit, inventory, update-with-start).

A ``jti`` seen before gets the first answer again and no second effect.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stanch.audit import AuditStore
from stanch.ingest import NormalizeError, normalize
from stanch.logging import get_logger
from stanch.models import Alert, AuditEvent, AuditType
from stanch.ssf import events
from stanch.ssf.config import SsfSettings, SsfTransmitterConfig
from stanch.ssf.jwks import RemoteJwks
from stanch.ssf.set import SetError, Unavailable, validate
from stanch.ssf.store import SsfStore

log = get_logger(__name__)


def metadata_url(issuer: str) -> str:
    """SSF §7.2: the well-known path goes between the issuer's host and its path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, "/.well-known/ssf-configuration" + path,
                       "", ""))


@dataclass
class Outcome:
    kind: str  # alert | verification | unsolicited_verification | stream_updated
    claims: dict[str, Any]
    duplicate: bool = False
    alerts: list[Alert] = field(default_factory=list)


FORGET_EVERY_SECONDS = 3600.0


class Receiver:
    def __init__(self, ssf: SsfSettings, store: SsfStore, audit: AuditStore,
                 default_audience: str) -> None:
        self.ssf = ssf
        self.store = store
        self.audit = audit
        self.default_audience = default_audience
        self._jwks: dict[str, RemoteJwks] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}  # access tokens for transmitters, in memory only
        self._pruned_at = 0.0

    def config(self, name: str) -> SsfTransmitterConfig:
        cfg = self.ssf.transmitters.get(name)
        if cfg is None:
            raise SetError("invalid_request", f"no transmitter {name[:64]!r} is configured "
                           "(ssf.transmitters)")
        return cfg

    def audience(self, name: str) -> str:
        cfg = self.config(name)
        remote = self.store.remote(name)
        return cfg.audience or _first(remote.get("config", {}).get("aud")) \
            or self.ssf.receiver_audience or self.default_audience

    async def jwks(self, name: str) -> RemoteJwks:
        jwks = self._jwks.get(name)
        if jwks is None:
            cfg = self.config(name)
            url = cfg.jwks_url or (await self.metadata(name)).get("jwks_uri")
            if not isinstance(url, str):
                raise SetError("invalid_key", "the transmitter publishes no jwks_uri")
            jwks = self._jwks[name] = RemoteJwks(url)
        return jwks

    async def metadata(self, name: str, *, refresh: bool = False) -> dict[str, Any]:
        from stanch.ssf.client import SsfClientError, discover

        if refresh or name not in self._metadata:
            try:
                self._metadata[name] = await discover(self.config(name))
            except SsfClientError as e:
                raise Unavailable(str(e)) from None
        return self._metadata[name]

    async def accept(self, name: str, token: str, *, via: str) -> Outcome:
        """Validate and interpret one SET; raises :class:`SetError` to refuse it."""
        cfg = self.config(name)
        jwks = await self.jwks(name)
        claims = await validate(token, key=jwks.key, issuer=cfg.issuer,
                                audience=self.audience(name), now=time.time(),
                                max_age=self.ssf.max_set_age_seconds,
                                skew=self.ssf.clock_skew_seconds)
        jti = claims["jti"]
        (event_type, payload), = claims["events"].items()
        first = await asyncio.to_thread(self.store.seen, name, jti)
        if first is not None:
            await self._record(name, claims, f"duplicate of an earlier {first}", via)
            return Outcome(first, claims, duplicate=True)
        if event_type == events.VERIFICATION:
            outcome = await self._verification(name, claims, payload, via)
        elif event_type == events.STREAM_UPDATED:
            status = payload.get("status")
            await asyncio.to_thread(self.store.save_remote, name, status=status)
            await self._record(name, claims, f"stream status now {status}", via)
            outcome = Outcome("stream_updated", claims)
        else:
            try:
                alerts = normalize("ssf", claims, datetime.now(UTC))
            except NormalizeError as e:
                raise SetError("invalid_request", f"event not understood: {e.reason}"
                               ) from None
            outcome = Outcome("alert", claims, alerts=alerts)
        return outcome

    async def done(self, name: str, outcome: Outcome) -> None:
        """Remember the ``jti`` once its effect is in place (alert dispatched…)."""
        if not outcome.duplicate:
            await asyncio.to_thread(self.store.remember, name, outcome.claims["jti"],
                                    outcome.kind)
            await self._forget_old_jtis()

    async def _forget_old_jtis(self) -> None:
        """The seen-jti table only has to outlive the SETs that could still be accepted: one
        received before ``max_set_age + clock_skew`` ago had an ``iat`` older than the max
        age, so a replay of it is refused by its age. At most once an hour."""
        now = time.time()
        if now - self._pruned_at < FORGET_EVERY_SECONDS:
            return
        self._pruned_at = now
        horizon = now - self.ssf.max_set_age_seconds - self.ssf.clock_skew_seconds
        await asyncio.to_thread(self.store.forget_seen, horizon)

    async def _verification(self, name: str, claims: dict[str, Any],
                            payload: dict[str, Any], via: str) -> Outcome:
        remote = await asyncio.to_thread(self.store.remote, name)
        expected, got = remote.get("state"), payload.get("state")
        sub = claims.get("sub_id") or {}
        stream_id = remote.get("stream_id")
        if expected is None or got is None:
            await self._record(name, claims, "unsolicited verification: recorded, the "
                               "stream is not marked verified by it", via)
            return Outcome("unsolicited_verification", claims)
        if got != expected:
            raise SetError("invalid_request", "verification state does not match the one "
                           "Stanch requested")
        if stream_id and (sub.get("format") != "opaque" or sub.get("id") != stream_id):
            raise SetError("invalid_request", "verification sub_id is not this stream")
        await asyncio.to_thread(self.store.save_remote, name, state=None,
                                verified_at=time.time())
        await self._record(name, claims, "stream verified", via)
        return Outcome("verification", claims)

    async def _record(self, name: str, claims: dict[str, Any], what: str, via: str) -> None:
        (event_type, _), = claims["events"].items()
        await asyncio.to_thread(self.audit.append, AuditEvent(
            type=AuditType.ssf_event, at=datetime.now(UTC), actor=f"ssf:{name}",
            reason=what, dedup_key=f"ssf:{name}:{claims['jti']}:{what[:40]}",
            data={"transmitter": name, "jti": claims["jti"], "event_type": event_type,
                  "iss": claims.get("iss"), "via": via}))
        log.info("ssf.event", transmitter=name, jti=claims["jti"], event_type=event_type,
                 outcome=what)

    async def refused(self, name: str, err: SetError, via: str, client: str | None) -> None:
        """Audit a refusal (the route and the poller answer it)."""
        await asyncio.to_thread(self.audit.append, AuditEvent(
            type=AuditType.alert_refused, at=datetime.now(UTC), actor=f"ssf:{name[:64]}",
            reason=err.description, data={"source": "ssf", "err": err.err, "via": via,
                                          "client": client}))
        log.info("ssf.refused", transmitter=name[:64], err=err.err, reason=err.description,
                 via=via)


def _first(aud: Any) -> str | None:
    if isinstance(aud, list):
        return aud[0] if aud and isinstance(aud[0], str) else None
    return aud if isinstance(aud, str) else None
