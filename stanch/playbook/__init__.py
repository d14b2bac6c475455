"""Playbooks: the DSL (:mod:`.schema`), pure matching and planning (:mod:`.planner`), and
loading with located errors (:mod:`.loader`).

Workflow code imports ``stanch.playbook.planner`` (or ``from stanch.playbook import plan``):
the loader, which reads files and YAML, is imported lazily so it never enters the sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stanch.playbook.errors import LoadError, LocatedError, PlaybookError
from stanch.playbook.planner import explain, match, plan, step_id
from stanch.playbook.schema import Playbook, Step

if TYPE_CHECKING:
    from stanch.playbook.loader import lint, load_playbooks

_LAZY = {"lint", "load_playbooks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from stanch.playbook import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LoadError",
    "LocatedError",
    "Playbook",
    "PlaybookError",
    "Step",
    "explain",
    "lint",
    "load_playbooks",
    "match",
    "plan",
    "step_id",
]
