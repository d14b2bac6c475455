"""A spec-faithful SSF transmitter for receiver tests, served over real HTTP.

It does what the OpenID conformance suite's receiver plans need a transmitter to do:
publish metadata and a JWKS (and rotate it), issue short-lived OAuth access tokens by
client credentials (and expire them on demand), create and read streams, answer a
verification request by pushing a verification SET, and sign any SET a test asks for —
correctly or wrongly (bad signature, other iss/aud, unpublished kid).
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stanch.ssf import events
from stanch.ssf.set import make_claims, sign

CLIENT_ID, CLIENT_SECRET = "stanch-receiver", "fake-client-secret"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeTransmitter:
    def __init__(self) -> None:
        self.url = ""  # set once served
        self.issuer_override: str | None = None
        self.stream_iss_override: str | None = None
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": _key()}
        self.published = ["k1"]
        self.active = "k1"
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.jwks_fetches = 0
        self.streams: dict[str, dict[str, Any]] = {}
        self.verify_states: list[str] = []
        self.app = self._build()

    @property
    def issuer(self) -> str:
        return self.url

    # ------------------------------------------------------------------ test controls
    def rotate(self) -> str:
        kid = f"k{len(self.keys) + 1}"
        self.keys[kid] = _key()
        self.published.append(kid)
        self.active = kid
        return kid

    def unpublished_key(self) -> str:
        kid = f"hidden{len(self.keys)}"
        self.keys[kid] = _key()
        return kid

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def set_(self, event_type: str, sub_id: dict[str, Any], event: dict[str, Any] | None = None,
             *, aud: str, kid: str | None = None, iss: str | None = None,
             corrupt: bool = False, **extra: Any) -> str:
        claims = make_claims(iss=iss or self.issuer, aud=aud, event_type=event_type,
                             event=event or {}, sub_id=sub_id)
        claims.update(extra)
        kid = kid or self.active
        token = sign(claims, self.keys[kid], kid)
        if corrupt:
            head, body, sig = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
            raw[0] ^= 0xFF
            token = ".".join([head, body,
                              base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
        return token

    # ------------------------------------------------------------------ HTTP
    def _build(self) -> FastAPI:
        app = FastAPI()

        def authed(request: Request) -> bool:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return scheme == "Bearer" and token in self.tokens

        @app.get("/.well-known/ssf-configuration")
        async def meta() -> dict[str, Any]:
            base = self.url
            return {"spec_version": "1_0", "issuer": self.issuer_override or self.issuer,
                    "jwks_uri": f"{base}/jwks", "configuration_endpoint": f"{base}/streams",
                    "verification_endpoint": f"{base}/verify",
                    "status_endpoint": f"{base}/status",
                    "delivery_methods_supported": ["urn:ietf:rfc:8935"],
                    "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}]}

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            self.jwks_fetches += 1
            out = []
            for kid in self.published:
                jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key(),
                                                         as_dict=True)
                out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
            return {"keys": out}

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            self.token_requests += 1
            scheme, _, creds = request.headers.get("authorization", "").partition(" ")
            if scheme != "Basic" or base64.b64decode(creds).decode() != \
                    f"{CLIENT_ID}:{CLIENT_SECRET}":
                return JSONResponse({"error": "invalid_client"}, 401)
            tok = secrets.token_urlsafe(16)
            self.tokens.add(tok)
            return JSONResponse({"access_token": tok, "token_type": "Bearer",
                                 "expires_in": 300})

        @app.post("/streams", status_code=201)
        async def create(request: Request) -> Response:
            if not authed(request):
                return JSONResponse({"error": "invalid_token"}, 401)
            body = await request.json()
            sid = secrets.token_hex(6)
            stream = {"stream_id": sid, "iss": self.stream_iss_override or self.issuer,
                      "aud": "https://stanch.test/receiver",
                      "events_supported": sorted(events.ALERT_EVENTS),
                      "events_requested": body.get("events_requested", []),
                      "events_delivered": body.get("events_requested", []),
                      "delivery": body.get("delivery")}
            self.streams[sid] = stream
            return JSONResponse(stream, 201)

        @app.get("/streams")
        async def read(request: Request, stream_id: str) -> Response:
            if not authed(request):
                return JSONResponse({"error": "invalid_token"}, 401)
            s = self.streams.get(stream_id)
            return JSONResponse(s) if s else JSONResponse({"error": "not_found"}, 404)

        @app.post("/status")
        async def status(request: Request) -> Response:
            if not authed(request):
                return JSONResponse({"error": "invalid_token"}, 401)
            body = await request.json()
            self.streams[body["stream_id"]]["status"] = body["status"]
            return JSONResponse({"stream_id": body["stream_id"], "status": body["status"]})

        @app.post("/verify", status_code=204)
        async def verify(request: Request) -> Response:
            if not authed(request):
                return JSONResponse({"error": "invalid_token"}, 401)
            body = await request.json()
            self.verify_states.append(body["state"])
            return Response(status_code=204)

        return app

    async def push(self, stream_id: str, token: str) -> httpx.Response:
        """POST a SET to the stream's endpoint the way RFC 8935 says."""
        delivery = self.streams[stream_id]["delivery"]
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        if delivery.get("authorization_header"):
            headers["Authorization"] = delivery["authorization_header"]
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(delivery["endpoint_url"], content=token, headers=headers)

    def verification(self, stream_id: str, state: str | None, aud: str) -> str:
        event = {"state": state} if state is not None else {}
        return self.set_(events.VERIFICATION, {"format": "opaque", "id": stream_id}, event,
                         aud=aud)


def now() -> int:
    return int(time.time())
