"""Templates, and the context every page shares (who, their CSRF token, messages)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from stanch.capabilities import LOSSES
from stanch.console.security import can
from stanch.console.sessions import Session
from stanch.console.views import UNDO
from stanch.models import Role

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


def _hm(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


templates.env.filters["when"] = _hm
templates.env.filters["pretty"] = _pretty
templates.env.globals["iso"] = lambda d: d.isoformat() if d else ""
templates.env.globals["undo_of"] = lambda action: UNDO.get(str(action))
templates.env.globals["loss_text"] = lambda loss: LOSSES.get(loss, "not described in "
                                                              "stanch/capabilities.py")


def page(request: Request, name: str, session: Session | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    flash: list[tuple[str, str]] = []
    if session is not None:
        flash = session.take_flash()
    base = {
        "request": request, "session": session,
        "me": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "may_decide": bool(session and can(session, Role.approver)),
        "may_act": bool(session and can(session, Role.responder)),
        "flash": flash, "path": request.url.path,
    }
    return templates.TemplateResponse(request, name, base | context, status_code=status)
