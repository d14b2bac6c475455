"""Workflows: deterministic orchestration only. No I/O, clocks or randomness here.

``WORKFLOWS`` is resolved lazily: Temporal's sandbox imports this package afresh for every
workflow run, and it must not drag every workflow module in with it each time.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WORKFLOWS":
        from workflows.containment import ContainmentWorkflow
        from workflows.elevation import ElevationWorkflow, ScopeLeaseWorkflow
        from workflows.ssf_delivery import SsfPushWorkflow

        return [ContainmentWorkflow, ElevationWorkflow, ScopeLeaseWorkflow, SsfPushWorkflow]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["WORKFLOWS"]
