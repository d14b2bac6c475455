"""Webhook authentication: one function, a mode per source, verification over raw bytes.

Modes (``settings.sources[<source>].mode``):

- ``standard_webhooks`` — ``webhook-id``/``webhook-timestamp``/``webhook-signature``,
  HMAC-SHA256 over ``id.timestamp.body`` with ``whsec_`` secrets; the timestamp must lie in
  the replay window and the id must not have been seen before.
- ``github`` — ``X-Hub-Signature-256: sha256=<hex HMAC of body>``.
- ``bearer`` — ``Authorization: Bearer <token>`` (or HTTP Basic with the token as password,
  for Kibana's connector).
- ``url_token`` — ``?token=<token>``, for Splunk's header-less webhook action.
- ``hmac`` — ``X-Signature: <hex HMAC-SHA256 of body>``; with ``timestamp_header`` set, the
  HMAC covers ``timestamp.body`` and the timestamp must lie in the replay window.
- ``open`` — no check; only when configured explicitly.

Every configured secret is tried (rotation), every comparison is constant time, and the
reasons say what was wrong — never what was expected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from stanch.config import Settings, SourceAuth
from stanch.ingest.errors import AuthError

MANUAL_SOURCE = "manual"


class ReplayStore(Protocol):
    """Where seen webhook ids live; the API may plug a shared, persistent one (sqlite)."""

    def check_and_remember(self, key: str, *, now: datetime, ttl_seconds: float) -> bool:
        """Remember ``key`` for ``ttl_seconds``; False if it was already remembered."""
        ...


class ReplayCache:
    """In-memory :class:`ReplayStore`: bounded (oldest dropped first) with a TTL per id.

    When full, the oldest ids are dropped even if unexpired; the timestamp window still
    bounds what an attacker can replay, so the bound trades memory for a tiny window.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_remember(self, key: str, *, now: datetime, ttl_seconds: float) -> bool:
        t = now.timestamp()
        with self._lock:
            while self._expiry:
                oldest, exp = next(iter(self._expiry.items()))
                if exp > t and len(self._expiry) < self.max_entries:
                    break
                del self._expiry[oldest]
            seen = self._expiry.get(key)
            if seen is not None and seen > t:
                return False
            self._expiry[key] = t + ttl_seconds
            self._expiry.move_to_end(key)
            return True

    def __len__(self) -> int:
        return len(self._expiry)


DEFAULT_REPLAY_CACHE = ReplayCache()


def authenticate(
    source: str,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    settings: Settings,
    now: datetime,
    replay_cache: ReplayStore | None = None,
) -> str:
    """Verify one delivery; return the key id that matched (``bearer:0``…) or ``open``."""
    if source == MANUAL_SOURCE:
        raise AuthError(
            "source `manual` is not a webhook: start a manual containment with "
            "`stanch contain` or POST /v1/containments",
            code="not_configured",
        )
    conf = settings.sources.get(source)
    if conf is None:
        raise AuthError(
            f"source `{source}` has no authentication configured: add [sources.{source}] "
            f'with mode = "bearer" (or standard_webhooks, github, url_token, hmac, open) and '
            f"secrets = [...] to stanch.toml, or set STANCH_SOURCES__{source.upper()}__MODE",
            code="not_configured",
        )
    if conf.mode == "open":
        return "open"
    if not conf.secrets:
        raise AuthError(
            f"source `{source}` (mode {conf.mode}) has no secrets configured: "
            f"set sources.{source}.secrets",
            code="not_configured",
        )
    h = {k.lower(): v for k, v in headers.items()}
    verify = _VERIFIERS[conf.mode]
    return verify(source, conf, h, query, body, now, replay_cache or DEFAULT_REPLAY_CACHE)


# --------------------------------------------------------------------------- modes



def _secret_values(conf: SourceAuth) -> list[str]:
    return [s.get_secret_value() for s in conf.secrets]


def _match_digest(given: bytes, candidates: list[bytes]) -> int | None:
    """Index of the candidate equal to ``given``, comparing every one in constant time."""
    found: int | None = None
    for i, c in enumerate(candidates):
        if hmac.compare_digest(given, c) and found is None:
            found = i
    return found


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _token_match(given: str, conf: SourceAuth) -> int | None:
    # Compare digests, not the tokens, so neither length nor prefix leaks.
    g = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    cands = [hashlib.sha256(s.encode()).digest() for s in _secret_values(conf)]
    return _match_digest(g, cands)


def _verify_bearer(
    source: str, conf: SourceAuth, h: dict[str, str], query: Mapping[str, str],
    body: bytes, now: datetime, replay: ReplayStore,
) -> str:
    auth = h.get("authorization", "").strip()
    scheme, _, cred = auth.partition(" ")
    token: str | None = None
    if scheme.lower() == "bearer":
        token = cred.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise AuthError("malformed Basic credentials", code="malformed") from None
        token = decoded.partition(":")[2]
    if not token:
        raise AuthError("missing Authorization: Bearer token", code="missing")
    idx = _token_match(token, conf)
    if idx is None:
        raise AuthError("bearer token not recognised", code="bad_token")
    return f"bearer:{idx}"


def _verify_url_token(
    source: str, conf: SourceAuth, h: dict[str, str], query: Mapping[str, str],
    body: bytes, now: datetime, replay: ReplayStore,
) -> str:
    token = query.get("token")
    if not token:
        raise AuthError("missing ?token= query parameter", code="missing")
    idx = _token_match(token, conf)
    if idx is None:
        raise AuthError("URL token not recognised", code="bad_token")
    return f"url_token:{idx}"


def _verify_github(
    source: str, conf: SourceAuth, h: dict[str, str], query: Mapping[str, str],
    body: bytes, now: datetime, replay: ReplayStore,
) -> str:
    sig = h.get("x-hub-signature-256", "").strip()
    if not sig:
        raise AuthError("missing X-Hub-Signature-256 header", code="missing")
    algo, _, hexsig = sig.partition("=")
    try:
        given = bytes.fromhex(hexsig)
    except ValueError:
        given = b""
    if algo != "sha256" or len(given) != 32:
        raise AuthError("malformed X-Hub-Signature-256 (expected sha256=<hex>)", code="malformed")
    idx = _match_digest(given, [_hmac(s.encode(), body) for s in _secret_values(conf)])
    if idx is None:
        raise AuthError("X-Hub-Signature-256 does not match the body", code="bad_signature")
    return f"github:{idx}"


def _check_window(ts_text: str, now: datetime, window: int, header: str) -> int:
    try:
        ts = int(ts_text.strip())
    except ValueError:
        raise AuthError(f"malformed {header} (expected epoch seconds)", code="malformed") from None
    skew = abs(now.timestamp() - ts)
    if skew > window:
        raise AuthError(
            f"{header} is {int(skew)} s from now, outside the {window} s replay window",
            code="expired",
        )
    return ts


def _verify_hmac(
    source: str, conf: SourceAuth, h: dict[str, str], query: Mapping[str, str],
    body: bytes, now: datetime, replay: ReplayStore,
) -> str:
    name = conf.signature_header
    sig = h.get(name.lower(), "").strip()
    if not sig:
        raise AuthError(f"missing {name} header", code="missing")
    if sig.lower().startswith("sha256="):
        sig = sig[7:]
    try:
        given = bytes.fromhex(sig)
    except ValueError:
        given = b""
    if len(given) != 32:
        raise AuthError(f"malformed {name} (expected hex HMAC-SHA256)", code="malformed")
    msg = body
    if conf.timestamp_header:
        ts_text = h.get(conf.timestamp_header.lower(), "")
        if not ts_text:
            raise AuthError(f"missing {conf.timestamp_header} header", code="missing")
        _check_window(ts_text, now, conf.replay_window_seconds, conf.timestamp_header)
        msg = ts_text.strip().encode() + b"." + body
    idx = _match_digest(given, [_hmac(s.encode(), msg) for s in _secret_values(conf)])
    if idx is None:
        raise AuthError(f"{name} does not match the body", code="bad_signature")
    return f"hmac:{idx}"


@lru_cache(maxsize=64)
def whsec_key(secret: str) -> bytes:
    """The raw key of a Standard Webhooks secret (``whsec_`` + base64)."""
    b64 = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(
            "a configured standard_webhooks secret is not whsec_<base64>", code="not_configured"
        ) from None
    if not key:
        raise AuthError("a configured standard_webhooks secret is empty", code="not_configured")
    return key


def _verify_standard(
    source: str, conf: SourceAuth, h: dict[str, str], query: Mapping[str, str],
    body: bytes, now: datetime, replay: ReplayStore,
) -> str:
    msg_id = h.get("webhook-id", "").strip()
    ts_text = h.get("webhook-timestamp", "").strip()
    sig_header = h.get("webhook-signature", "").strip()
    missing = [n for n, v in (("webhook-id", msg_id), ("webhook-timestamp", ts_text),
                              ("webhook-signature", sig_header)) if not v]
    if missing:
        raise AuthError(f"missing {', '.join(missing)} header(s)", code="missing")
    window = conf.replay_window_seconds
    _check_window(ts_text, now, window, "webhook-timestamp")
    given: list[bytes] = []
    for part in sig_header.split():
        version, _, b64 = part.partition(",")
        if version != "v1":
            continue
        try:
            given.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not given:
        raise AuthError("malformed webhook-signature (expected v1,<base64>)", code="malformed")
    signed = f"{msg_id}.{ts_text}.".encode() + body
    expected = [_hmac(whsec_key(s), signed) for s in _secret_values(conf)]
    idx: int | None = None
    for g in given:
        m = _match_digest(g, expected)
        if m is not None and idx is None:
            idx = m
    if idx is None:
        raise AuthError("webhook-signature does not match the body", code="bad_signature")
    # Remember the id only once the signature holds: an attacker cannot burn ids.
    if not replay.check_and_remember(f"{source}\x00{msg_id}", now=now, ttl_seconds=2 * window):
        raise AuthError(f"webhook-id {msg_id[:64]!r} was already delivered (replay)",
                        code="replay")
    return f"standard_webhooks:{idx}"


_VERIFIERS = {
    "bearer": _verify_bearer,
    "url_token": _verify_url_token,
    "github": _verify_github,
    "hmac": _verify_hmac,
    "standard_webhooks": _verify_standard,
}
