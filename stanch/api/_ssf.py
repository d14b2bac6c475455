"""What the SSF routers share: the receiver, the transmitter and their store, built once
per app on first use (so the issuer reflects ``api.public_url`` as configured by then)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stanch.ssf.delivery import issuer_of, open_transmitter
from stanch.ssf.receiver import Receiver
from stanch.ssf.store import SsfStore
from stanch.ssf.transmitter import Transmitter


@dataclass
class SsfRuntime:
    store: SsfStore
    receiver: Receiver
    transmitter: Transmitter


def runtime(app: Any) -> SsfRuntime:
    rt: SsfRuntime | None = getattr(app.state, "ssf", None)
    if rt is None:
        settings = app.state.settings
        store = SsfStore(settings.state_dir / "ssf.db")
        issuer = issuer_of(settings)
        rt = SsfRuntime(store, Receiver(settings.ssf, store, app.state.audit, issuer),
                        open_transmitter(settings, store, app.state.inventory))
        app.state.ssf = rt
    return rt

