"""Console sessions and one-time sign-in links.

A session is a random id in an HttpOnly, SameSite=Strict cookie; what it stands for (the
principal, its CSRF token, when it ends) stays in this process. A sign-in link is minted
by ``stanch up`` (another process): its SHA-256 is written under the state directory, and
the API consumes it once, within ten minutes, in exchange for a session.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from stanch.models import Principal

SESSION_SECONDS = 8 * 3600
LINK_SECONDS = 600
_LINK_DIR = "console-links"


@dataclass
class Session:
    principal: Principal
    csrf: str
    expires: float
    via: str
    flash: list[tuple[str, str]] = field(default_factory=list)


class SessionStore:
    """Sessions by id, in memory: a restart of the API signs everybody out."""

    def __init__(self, lifetime: float = SESSION_SECONDS) -> None:
        self._lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, principal: Principal, via: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(principal=principal, csrf=secrets.token_urlsafe(32),
                          expires=time.time() + self._lifetime, via=via)
        with self._lock:
            self._prune()
            self._sessions[_digest(sid)] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(_digest(sid))
            if session is not None and session.expires < time.time():
                del self._sessions[_digest(sid)]
                return None
            return session

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def _prune(self) -> None:
        now = time.time()
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def mint_login_link(state_dir: Path, principal: str, *,
                    lifetime: float = LINK_SECONDS) -> str:
    """A single-use sign-in token for ``principal``; only its digest is written down."""
    token = secrets.token_urlsafe(32)
    folder = state_dir / _LINK_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / _digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"principal": principal, "expires": time.time() + lifetime}, f)
    return token


def consume_login_link(state_dir: Path, token: str) -> str | None:
    """The principal a link was minted for, once; None when unknown, used or expired."""
    if not token or len(token) > 200:
        return None
    path = state_dir / _LINK_DIR / _digest(token)
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
