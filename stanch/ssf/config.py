"""``[ssf]`` settings: Stanch as SSF transmitter, and the transmitters it receives from.

Kept apart from :mod:`stanch.config` (which only holds the field) so the SSF part owns its
own knobs; nothing here imports the rest of Stanch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class SsfTransmitterConfig(_Section):
    """One transmitter Stanch receives from. Its key in ``ssf.transmitters`` names the
    stream in URLs: pushed SETs arrive at ``POST /v1/ssf/push/<name>``."""

    issuer: str = Field(description="The transmitter's issuer; its metadata and every SET's "
                        "`iss` must equal it exactly.")
    metadata_url: str | None = Field(
        default=None, description="Default: `/.well-known/ssf-configuration` inserted between "
        "the issuer's host and path (SSF §7.2).")
    jwks_url: str | None = Field(default=None, description="Default: the metadata's jwks_uri.")
    audience: str | None = Field(
        default=None, description="The `aud` SETs must carry; default: the stream's `aud` as "
        "the transmitter returned it, else `ssf.receiver_audience`.")
    delivery: Literal["push", "poll"] = "push"
    push_tokens: list[SecretStr] = Field(
        default_factory=list, description="Authorization bearer tokens the transmitter must "
        "send with pushed SETs (several for rotation). Empty: the SET signature alone.")
    access_token: SecretStr | None = Field(
        default=None, description="Static bearer token for the transmitter's endpoints.")
    token_url: str | None = Field(default=None, description="OAuth 2.0 token endpoint "
                                  "(client credentials) for the transmitter's endpoints.")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str = "ssf.manage ssf.read"
    events_requested: list[str] = Field(
        default_factory=list, description="Event type URIs to ask for; empty: every type "
        "Stanch understands.")
    poll_interval_seconds: float = Field(default=10.0, gt=0)
    max_events: int = Field(default=50, ge=1, le=1000)


class SsfSettings(_Section):
    enabled: bool = Field(default=True, description="Serve the transmitter and receiver.")
    issuer: str | None = Field(
        default=None, description="Stanch's issuer as a transmitter; default: api.public_url, "
        "else http://<api.host>:<api.port>.")
    receiver_audience: str | None = Field(
        default=None, description="The `aud` Stanch expects when a stream names none; "
        "default: Stanch's issuer.")
    max_set_age_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Oldest `iat` accepted (polled queues may "
        "hold SETs for a while).")
    clock_skew_seconds: int = Field(default=120, ge=0, description="`iat` may be this far "
                                    "in the future.")
    min_verification_interval_seconds: int = Field(default=0, ge=0)
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    emit_interval_seconds: float = Field(default=1.0, gt=0, description="How often the "
                                         "worker looks for applied actions to announce.")
    transmitters: dict[str, SsfTransmitterConfig] = Field(default_factory=dict)
