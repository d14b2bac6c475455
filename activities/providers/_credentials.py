"""Where adapters get their credentials: configuration, the environment, or secret files.

A configured value ``file:/run/secrets/okta_token`` is read from that file (trailing newline
dropped) and ``env:OKTA_TOKEN`` from that environment variable, so secrets need not sit in
``stanch.toml``. Read credentials serve snapshots; action credentials serve writes. When only
one set is configured it serves both. Values are returned as plain strings only at the point
of use and are never logged or put into errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from activities.providers.base import PermanentProviderError
from stanch.config import ProviderSettings

Purpose = Literal["read", "action"]


def resolve_secret(value: str, *, provider: str, key: str) -> str:
    """Expand ``file:`` and ``env:`` references; the error names the setting, never a value."""
    if value.startswith("file:"):
        path = Path(value[len("file:"):])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PermanentProviderError(
                f"credential {key!r}: cannot read secret file {path} ({err.strerror})",
                provider=provider, code="CredentialFile",
            ) from None
    if value.startswith("env:"):
        name = value[len("env:"):]
        found = os.environ.get(name)
        if found is None:
            raise PermanentProviderError(
                f"credential {key!r}: environment variable {name} is not set",
                provider=provider, code="CredentialEnv",
            )
        return found
    return value


def credential(conf: ProviderSettings, purpose: Purpose, key: str, *, provider: str,
               env: str | None = None) -> str | None:
    """One credential for ``purpose``; falls back to the other set, then to ``env``."""
    first, second = (
        (conf.read_credentials, conf.action_credentials)
        if purpose == "read"
        else (conf.action_credentials, conf.read_credentials)
    )
    secret: SecretStr | None = first.get(key) if first else None
    if secret is None and not first:
        secret = second.get(key)
    raw = secret.get_secret_value() if secret is not None else None
    if raw is None and env:
        raw = os.environ.get(env)
    if raw is None:
        return None
    return resolve_secret(raw, provider=provider, key=key)


def require(conf: ProviderSettings, purpose: Purpose, key: str, *, provider: str,
            env: str | None = None) -> str:
    value = credential(conf, purpose, key, provider=provider, env=env)
    if not value:
        where = f" or ${env}" if env else ""
        raise PermanentProviderError(
            f"missing {purpose} credential {key!r} (set providers.{provider}."
            f"{purpose}_credentials.{key}{where})",
            provider=provider, code="CredentialMissing",
        )
    return value
