"""Console sessions and one-time sign-in links.

A session is a random id in an HttpOnly, SameSite=Strict cookie; what it stands for (the
principal, its CSRF token, when it ends) is kept, under the id's digest, in the audit
database for every API process (:mod:`stanch.console.session_db`). A sign-in link is minted
by ``stanch up`` (another process): its SHA-256 is written under the state directory, and
the API consumes it once, within ten minutes, in exchange for a session.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stanch.models import Principal

SESSION_SECONDS = 8 * 3600
LINK_SECONDS = 600
_LINK_DIR = "console-links"


@dataclass
class Session:
    """One signed-in person, as read from the session store (:mod:`stanch.console.session_db`)."""

    principal: Principal
    csrf: str
    expires: float
    via: str
    key: str = ""  # the SHA-256 of the session id: the store's key, never the id itself
    flash: list[tuple[str, str]] = field(default_factory=list)
    store: Any = field(default=None, repr=False, compare=False)  # where say() writes

    def say(self, kind: str, text: str) -> None:
        """A message for the next page this person sees, on whichever API process."""
        if self.store is None:
            self.flash.append((kind, text))
        else:
            self.store.say(self, kind, text)

    def take_flash(self) -> list[tuple[str, str]]:
        """The waiting messages, once."""
        if self.store is None:
            flash, self.flash = self.flash, []
            return flash
        taken: list[tuple[str, str]] = self.store.take_flash(self)
        return taken


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def mint_login_link(state_dir: Path, principal: str, *,
                    lifetime: float = LINK_SECONDS) -> str:
    """A single-use sign-in token for ``principal``; only its digest is written down."""
    token = secrets.token_urlsafe(32)
    folder = state_dir / _LINK_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"principal": principal, "expires": time.time() + lifetime}, f)
    return token


def consume_login_link(state_dir: Path, token: str) -> str | None:
    """The principal a link was minted for, once; None when unknown, used or expired."""
    if not token or len(token) > 200:
        return None
    path = state_dir / _LINK_DIR / digest(token)
    claimed = path.with_name(f"{path.name}.{secrets.token_hex(8)}.used")
    try:
        os.rename(path, claimed)  # atomic: of two concurrent uses, one wins
    except OSError:
        return None
    try:
        data = json.loads(claimed.read_text())
    except (OSError, ValueError):
        return None
    finally:
        claimed.unlink(missing_ok=True)
    if not isinstance(data, dict) or float(data.get("expires", 0)) < time.time():
        return None
    principal = data.get("principal")
    return principal if isinstance(principal, str) and principal else None
