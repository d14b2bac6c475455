"""Security Event Tokens (RFC 8417) as SSF 1.0 and its interoperability profile use them.

:func:`sign` makes a compact JWS with ``typ: secevent+jwt`` and a ``kid``; :func:`validate`
checks one received SET in the order a receiver must, and raises :class:`SetError` carrying
the RFC 8935 error code (``invalid_request``, ``invalid_key``, ``invalid_issuer``,
``invalid_audience``) and a description safe to send back to the transmitter.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from stanch.ssf.events import KNOWN_EVENTS

TYP = "secevent+jwt"
ALGORITHMS = ("RS256", "ES256", "PS256")
SUBJECT_FORMATS = frozenset({"email", "iss_sub", "opaque", "phone_number", "account", "did",
                             "uri", "aliases", "complex"})

KeyLookup = Callable[[str | None, str], Awaitable[jwt.PyJWK]]
"""``(kid, alg) -> key``; raises :class:`SetError` (``invalid_key``) when none is known."""


class SetError(Exception):
    """A SET Stanch refuses. ``err`` is the RFC 8935 code, ``description`` the reason."""

    def __init__(self, err: str, description: str) -> None:
        super().__init__(f"{err}: {description}")
        self.err = err
        self.description = description

    def body(self) -> dict[str, str]:
        return {"err": self.err, "description": self.description}


class Unavailable(Exception):
    """The SET could not be checked now (the transmitter's metadata or keys did not load):
    not the SET's fault, so it is answered 503 / not acknowledged, and comes again."""


def new_jti() -> str:
    return uuid.uuid4().hex


def sign(claims: dict[str, Any], key: Any, kid: str, alg: str = "RS256") -> str:
    """The compact JWS of ``claims`` with SSF's header."""
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": TYP, "kid": kid})


def make_claims(*, iss: str, aud: str | list[str], event_type: str,
                event: dict[str, Any], sub_id: dict[str, Any], txn: str | None = None,
                jti: str | None = None, iat: int | None = None) -> dict[str, Any]:
    """One event, one SET: the claims the interoperability profile asks for."""
    claims: dict[str, Any] = {
        "iss": iss, "aud": aud, "jti": jti or new_jti(),
        "iat": int(time.time()) if iat is None else iat,
        "sub_id": sub_id, "events": {event_type: event},
    }
    if txn:
        claims["txn"] = txn
    return claims


def unverified(token: str) -> dict[str, Any]:
    """The claims of a compact SET *without* checking its signature (simulate, display)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise SetError("invalid_request", f"not a compact JWS: {e}") from None
    return claims


async def validate(token: str, *, key: KeyLookup, issuer: str, audience: str,
                   now: float, max_age: int, skew: int) -> dict[str, Any]:
    """Check ``token`` and return its claims, or raise :class:`SetError`."""
    header = _header(token)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise SetError("invalid_request", f"alg {str(alg)[:20]!r} is not accepted "
                       f"(one of {', '.join(ALGORITHMS)})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SetError("invalid_request", "kid must be a string")
    jwk = await key(kid, alg)
    try:
        claims = jwt.decode(token, jwk.key, algorithms=[alg], options={
            "verify_aud": False, "verify_iss": False, "verify_exp": False,
            "verify_iat": False, "verify_nbf": False, "require": []})
    except jwt.InvalidSignatureError:
        raise SetError("invalid_key", f"signature does not verify with key {kid!r}") from None
    except jwt.PyJWTError as e:
        raise SetError("invalid_request", f"not a valid JWS: {e}") from None
    _check_claims(claims, issuer=issuer, audience=audience, now=now, max_age=max_age,
                  skew=skew)
    return claims


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise SetError("invalid_request", "the body is not a compact JWS (three "
                       "base64url parts separated by dots)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise SetError("invalid_request", f"unreadable JWS header: {e}") from None
    typ = str(header.get("typ", "")).lower()
    if typ not in (TYP, "application/" + TYP):
        raise SetError("invalid_request", f"header typ must be {TYP!r} (got "
                       f"{str(header.get('typ'))[:40]!r})")
    return header


def _check_claims(claims: dict[str, Any], *, issuer: str, audience: str, now: float,
                  max_age: int, skew: int) -> None:
    if claims.get("iss") != issuer:
        raise SetError("invalid_issuer", f"iss {str(claims.get('iss'))[:200]!r} is not the "
                       f"stream's transmitter {issuer!r}")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if audience not in auds:
        raise SetError("invalid_audience", f"aud does not include {audience!r}")
    for banned in ("sub", "exp"):
        if banned in claims:
            raise SetError("invalid_request", f"a SET must not carry {banned!r} (RFC 8417 "
                           "§2.2, SSF §4.1.9)")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise SetError("invalid_request", "iat is missing or not a number")
    if iat > now + skew:
        raise SetError("invalid_request", f"iat is {int(iat - now)} s in the future")
    if iat < now - max_age:
        raise SetError("invalid_request", f"iat is older than {max_age} s")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise SetError("invalid_request", "jti is missing or not a string of 1-256 chars")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise SetError("invalid_request", "events must hold exactly one event")
    (event_type, payload), = events.items()
    if event_type not in KNOWN_EVENTS:
        raise SetError("invalid_request", f"unknown event type {event_type[:200]!r}")
    if not isinstance(payload, dict):
        raise SetError("invalid_request", "the event payload must be an object")
    check_subject(claims.get("sub_id"), "sub_id")


def check_subject(sub: Any, where: str, *, depth: int = 0) -> None:
    """An RFC 9493 subject identifier; ``complex`` members are subjects themselves."""
    if not isinstance(sub, dict) or not isinstance(sub.get("format"), str):
        raise SetError("invalid_request", f"{where} must be an object with a format")
    fmt = sub["format"]
    if fmt not in SUBJECT_FORMATS:
        raise SetError("invalid_request", f"{where}.format {fmt[:40]!r} is not supported")
    need = {"email": ("email",), "iss_sub": ("iss", "sub"), "opaque": ("id",),
            "phone_number": ("phone_number",), "account": ("uri",), "did": ("url",),
            "uri": ("uri",)}.get(fmt, ())
    for member in need:
        if not isinstance(sub.get(member), str) or not sub[member]:
            raise SetError("invalid_request", f"{where}.{member} is missing")
    if fmt == "complex" and depth == 0:
        members = {k: v for k, v in sub.items() if k != "format"}
        if not members:
            raise SetError("invalid_request", f"{where}: a complex subject needs a member")
        for name, value in members.items():
            check_subject(value, f"{where}.{name}", depth=1)
    if fmt == "aliases":
        ids = sub.get("identifiers")
        if not isinstance(ids, list) or not ids:
            raise SetError("invalid_request", f"{where}.identifiers is missing")
        for i, value in enumerate(ids):
            check_subject(value, f"{where}.identifiers[{i}]", depth=1)


def looks_like_compact(text: str) -> bool:
    parts = text.strip().split(".")
    return len(parts) == 3 and all(parts[:2]) and parts[0].startswith("eyJ")


def to_json(claims: dict[str, Any]) -> str:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"))
