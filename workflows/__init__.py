"""Workflows: deterministic orchestration only. No I/O, clocks or randomness here."""

from workflows.containment import ContainmentWorkflow

WORKFLOWS: list[type] = [ContainmentWorkflow]

__all__ = ["WORKFLOWS", "ContainmentWorkflow"]
