"""Command line: ``stanch up | worker | api | mock-idp | contain | approve | …``.

Each command module registers its commands on the root app when imported.
"""

from __future__ import annotations

from stanch.cli import (
    alerts,  # noqa: F401  (alert send, alerts dead-letter)
    audit,  # noqa: F401  (audit verify, tail, export, doubts, checkpoint)
    containment,  # noqa: F401  (status, contain, approve, deny, rollback, resolve, …)
    doctor,  # noqa: F401  (doctor)
    elevation,  # noqa: F401  (elevate, elevations, elevation approve|deny|extend|revoke)
    playbook,  # noqa: F401  (playbook lint, simulate, test, schema)
    providers,  # noqa: F401  (providers check)
    runtime,  # noqa: F401  (up, worker, api, mock-idp)
    ssf,  # noqa: F401  (ssf streams, connect, verify, pause, enable, rotate-key)
    token,  # noqa: F401  (token create)
)
from stanch.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
