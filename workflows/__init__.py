"""Workflows: deterministic orchestration only. No I/O, clocks or randomness here."""

from workflows.containment import ContainmentWorkflow
from workflows.elevation import ElevationWorkflow, ScopeLeaseWorkflow

WORKFLOWS: list[type] = [ContainmentWorkflow, ElevationWorkflow, ScopeLeaseWorkflow]

__all__ = ["WORKFLOWS", "ContainmentWorkflow", "ElevationWorkflow", "ScopeLeaseWorkflow"]
