"""The sender's side of :mod:`stanch.ingest.auth`: sign a body the way a source would.

Used by ``stanch alert send``, the tests and the benchmark, so the two sides cannot drift.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from stanch.ingest.auth import whsec_key


@dataclass
class SignedRequest:
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def sign(
    mode: str,
    body: bytes,
    *,
    secret: str | None,
    now: datetime,
    msg_id: str | None = None,
    signature_header: str = "X-Signature",
    timestamp_header: str | None = None,
) -> SignedRequest:
    """Headers and query parameters that authenticate ``body`` under ``mode``."""
    out = SignedRequest(headers={"Content-Type": "application/json"})
    if mode == "open":
        return out
    if not secret:
        raise ValueError(f"mode {mode} needs a secret")
    ts = str(int(now.timestamp()))
    if mode == "bearer":
        out.headers["Authorization"] = f"Bearer {secret}"
    elif mode == "url_token":
        out.query["token"] = secret
    elif mode == "github":
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        out.headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif mode == "hmac":
        msg = (ts.encode() + b"." + body) if timestamp_header else body
        out.headers[signature_header] = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
        if timestamp_header:
            out.headers[timestamp_header] = ts
    elif mode == "standard_webhooks":
        mid = msg_id or f"msg_{uuid.uuid4().hex}"
        mac = hmac.new(whsec_key(secret), f"{mid}.{ts}.".encode() + body, hashlib.sha256)
        out.headers.update({
            "webhook-id": mid,
            "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        })
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return out
