"""Playbook fixture tests: ``<case>.alert.json`` → ``<case>.expected.yaml``, kept beside the
playbooks like a unit test suite (``stanch playbook test``).

An expected file says what the planner must produce, and optionally what it starts from:

.. code-block:: yaml

    given:                        # optional
      identity: mock:sa-deploy    # plan for this identity instead of the alert's first
                                  # resolvable mention
      state:                      # a PlanState: what the containment already did
        applied_step_ids: [leaked-secret:0:notify]
        alerts_seen: 2              # alerts so far, this one included
    expect:
      identity: mock:sa-deploy
      playbook: leaked-secret     # null: no playbook matches
      steps:
        - id: leaked-secret:1:revoke
          action: revoke
          approval: [user:alice, soc-approvers]   # resolved groups; omitted or null: automatic

``id``, ``action`` and ``approval`` are always compared; ``notify``, ``quorum``,
``revert_after``, ``irreversible``, ``params`` and ``loses`` only when the expected step lists them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stanch.inventory import Inventory
from stanch.models import Action, PlannedStep, PlanState
from stanch.playbook.planner import plan
from stanch.playbook.schema import Playbook, format_duration
from stanch.playbook.simulate import SimulationError, read_alerts, resolve_identities
from stanch.playbook.yamlsrc import read_yaml

ALERT_SUFFIX = ".alert.json"
EXPECTED_SUFFIX = ".expected.yaml"
_ALWAYS = ("id", "action", "approval")


class _Given(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: str | None = Field(default=None, description="Identity key to plan for.")
    state: PlanState = Field(default_factory=PlanState, description="What was already done.")


class _ExpectedStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    action: Action
    approval: list[str] | None = None
    notify: list[str] | None = None
    quorum: int | None = None
    revert_after: str | None = None
    irreversible: bool | None = None
    params: dict[str, Any] | None = None
    loses: list[str] | None = None


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: str | None = None
    playbook: str | None
    steps: list[_ExpectedStep] = Field(default_factory=list)


class _Fixture(BaseModel):
    model_config = ConfigDict(extra="forbid")

    given: _Given = Field(default_factory=_Given)
    expect: _Expect


@dataclass(frozen=True)
class FixtureResult:
    """One case: passed, or the reason (an error or a diff, expected → actual)."""

    name: str
    playbook: str | None
    ok: bool
    detail: str = ""


def find_fixtures(directory: Path) -> list[tuple[Path, Path]]:
    """``(alert, expected)`` pairs in ``directory``, by name; an alert without an expected
    file is paired with the path it should have (and fails)."""
    alerts = sorted(directory.glob(f"*{ALERT_SUFFIX}"))
    return [(a, a.with_name(a.name.removesuffix(ALERT_SUFFIX) + EXPECTED_SUFFIX)) for a in alerts]


def run_fixtures(
    directory: Path, playbooks: Sequence[Playbook], inventory: Inventory
) -> list[FixtureResult]:
    return [run_fixture(a, e, playbooks, inventory) for a, e in find_fixtures(directory)]


def run_fixture(
    alert_path: Path, expected_path: Path, playbooks: Sequence[Playbook], inventory: Inventory
) -> FixtureResult:
    name = alert_path.name.removesuffix(ALERT_SUFFIX)
    if not expected_path.exists():
        return FixtureResult(name, None, False, f"{expected_path}: missing expected file")
    doc, errors = read_yaml(expected_path)
    if doc is None or errors:
        return FixtureResult(name, None, False, "\n".join(str(e) for e in errors))
    try:
        fixture = _Fixture.model_validate(doc.data)
    except ValidationError as err:
        return FixtureResult(
            name, None, False, "\n".join(str(e) for e in doc.validation_errors(err))
        )
    try:
        alerts = read_alerts(alert_path)
        resolutions = resolve_identities(alerts[0], inventory, fixture.given.identity)
    except SimulationError as exc:
        return FixtureResult(name, fixture.expect.playbook, False, str(exc))
    identity = next((r.identity for r in resolutions if r.identity is not None), None)
    actual: dict[str, Any]
    if identity is None:
        actual = {"identity": None, "playbook": None, "steps": []}
    else:
        result = plan(alerts[0], identity, playbooks, fixture.given.state)
        actual = {"identity": identity.ref.key, "playbook": result.playbook,
                  "steps": result.steps}
    expected = fixture.expect
    want = _render_expected(expected)
    got = _render_actual(actual, expected)
    if want == got:
        return FixtureResult(name, expected.playbook, True)
    diff = "".join(
        difflib.unified_diff(
            want.splitlines(keepends=True), got.splitlines(keepends=True),
            fromfile=str(expected_path), tofile="planned",
        )
    )
    return FixtureResult(name, expected.playbook, False, diff)


def _render_expected(expected: _Expect) -> str:
    steps = []
    for step in expected.steps:
        keys = [*_ALWAYS, *(k for k in _ExpectedStep.model_fields if k in step.model_fields_set
                            and k not in _ALWAYS)]
        data = step.model_dump(mode="json")
        steps.append({k: data[k] for k in keys})
    out: dict[str, Any] = {}
    if expected.identity is not None:
        out["identity"] = expected.identity
    out["playbook"] = expected.playbook
    out["steps"] = steps
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


def _render_actual(actual: dict[str, Any], expected: _Expect) -> str:
    steps = []
    planned: list[PlannedStep] = actual["steps"]
    for i, step in enumerate(planned):
        summary = summarize(step)
        keys = list(_ALWAYS)
        if i < len(expected.steps):
            chosen = expected.steps[i].model_fields_set
            keys += [k for k in _ExpectedStep.model_fields if k in chosen and k not in _ALWAYS]
        steps.append({k: summary[k] for k in keys})
    out: dict[str, Any] = {}
    if expected.identity is not None:
        out["identity"] = actual["identity"]
    out["playbook"] = actual["playbook"]
    out["steps"] = steps
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


def summarize(step: PlannedStep) -> dict[str, Any]:
    """A planned step in the words of an expected file (and of ``simulate``)."""
    out = {
        "id": step.step_id,
        "action": step.action.value,
        "approval": list(step.approval.groups) if step.approval else None,
        "notify": list(step.notify),
        "quorum": step.approval.quorum if step.approval else None,
        "revert_after": format_duration(step.revert_after) if step.revert_after else None,
        "irreversible": step.irreversible,
        "params": dict(step.params),
        "changes": list(step.changes),
        "undo_restores": list(step.undo_restores),
        "loses": list(step.loses),
        "loss_gate": step.loss_gate or None,
    }
    if step.skipped is not None:  # only where a provider type was known
        out["skipped"] = step.skipped
    return out
