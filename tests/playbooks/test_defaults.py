"""The default playbooks: clean, covered by fixtures, and faithful to the doctrine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic_core import to_json

from stanch.models import Action
from stanch.playbook import Playbook, lint
from stanch.playbook.fixtures import find_fixtures, run_fixtures
from tests.playbooks.helpers import DEFAULT_PLAYBOOKS, defaults, demo_inventory

FIXTURES = DEFAULT_PLAYBOOKS / "tests"
APPROVER_GROUPS = {"soc-approvers", "iam-admins", "soc-leads", "owner"}


def test_default_playbooks_lint_clean() -> None:
    assert lint([DEFAULT_PLAYBOOKS]) == []
    assert {pb.name for pb in defaults()} == {
        "risky-sign-in", "leaked-secret", "anomalous-nhi-api-use", "privilege-escalation",
        "oauth-app-compromise", "dormant-nhi-active", "malware-on-host", "manual-containment",
        "leaked-user-credential", "shared-signals",
    }


def test_every_fixture_passes() -> None:
    results = run_fixtures(FIXTURES, defaults(), demo_inventory())
    failures = {r.name: r.detail for r in results if not r.ok}
    assert failures == {}
    assert len(results) == len(find_fixtures(FIXTURES))


def test_every_default_playbook_has_two_fixtures() -> None:
    results = run_fixtures(FIXTURES, defaults(), demo_inventory())
    per_playbook = Counter(r.playbook for r in results)
    assert {pb.name: per_playbook[pb.name] >= 2 for pb in defaults()} == {
        pb.name: True for pb in defaults()
    }


def test_a_changed_playbook_fails_its_fixture_with_a_diff(tmp_path: Path) -> None:
    text = (DEFAULT_PLAYBOOKS / "risky-sign-in.yaml").read_text()
    changed = text.replace("waive_when: {severity: high, confidence: medium}",
                           "waive_when: {severity: critical, confidence: medium}")
    assert changed != text
    (tmp_path / "risky-sign-in.yaml").write_text(changed)
    from stanch.playbook import load_playbooks

    results = run_fixtures(FIXTURES, load_playbooks([tmp_path]), demo_inventory())
    failed = {r.name: r.detail for r in results if not r.ok}
    assert "risky-sign-in--impossible-travel" in failed
    diff = failed["risky-sign-in--impossible-travel"]
    assert "-  approval: null" in diff and "+  approval:\n+  - soc-approvers" in diff


def test_approver_groups_are_the_known_ones() -> None:
    for pb in defaults():
        for step in pb.ladder:
            if step.approval is None:
                continue
            groups = set(step.approval.groups)
            for stage in step.approval.escalation:
                groups |= set(stage.groups)
            assert groups <= APPROVER_GROUPS, (pb.name, groups)


def test_gates_follow_the_doctrine() -> None:
    for pb in defaults():
        for i, step in enumerate(pb.ladder):
            where = f"{pb.name} ladder[{i}]"
            if step.irreversible:
                assert step.approval is not None and step.approval.waive_when is None, where
            if step.approval is not None:
                # 1-10-60: a human step escalates or ends before the hour is gone, unless
                # it is irreversible clean-up after containment.
                stages = step.approval.escalation
                assert stages, where
                if not step.irreversible:
                    assert step.approval.deadline.total_seconds() <= 3600, where
                assert step.approval.on_timeout.value == "deny", where
            if step.action in (Action.rotate, Action.revoke) and step.approval:
                waive = step.approval.waive_when
                if waive is not None:
                    assert waive.confidence is not None and waive.confidence.rank >= 3, where


def test_playbooks_survive_a_json_round_trip() -> None:
    # The workflow receives playbooks as Temporal payloads.
    for pb in defaults():
        assert Playbook.model_validate_json(to_json(pb)) == pb
