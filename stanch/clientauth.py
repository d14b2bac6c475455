"""The CLI's own credential: ``STANCH_TOKEN``, else ``~/.config/stanch/token``.

Kept apart from :mod:`stanch.api.auth` so the CLI does not import the server side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def token_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the token file lives: ``$XDG_CONFIG_HOME/stanch/token`` or ``~/.config/…``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stanch" / "token"


def cli_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The API token the CLI should send, or None when none is configured."""
    env = os.environ if environ is None else environ
    token = env.get("STANCH_TOKEN", "").strip()
    if token:
        return token
    try:
        token = token_path(env).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return token or None


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` when a token is configured, else ``{}``."""
    token = cli_token(environ)
    return {"Authorization": f"Bearer {token}"} if token else {}
