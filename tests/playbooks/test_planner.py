"""The pure planner: deterministic, escalating, never re-planning what was applied."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path

from stanch.models import Action, PlanState
from stanch.playbook import explain, match, plan
from tests.playbooks.helpers import alert, defaults, demo_inventory, identity, playbook


def _ids(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.step_id for s in p.steps]


def test_same_inputs_same_plan_whatever_the_playbook_order() -> None:
    pbs = defaults()
    sa = demo_inventory().get("mock:sa-deploy")
    assert sa is not None
    a = alert("anomalous_api_use", "high", "high", source="datadog")
    first = plan(a, sa, pbs, PlanState())
    shuffled = list(pbs)
    random.Random(7).shuffle(shuffled)
    again = plan(a, sa, shuffled, PlanState())
    assert first == again
    dumped = json.dumps(first.model_dump(mode="json"), sort_keys=True)
    assert dumped == json.dumps(again.model_dump(mode="json"), sort_keys=True)
    assert json.loads(dumped)["steps"][1]["revert_after"] == "PT4H"


def test_a_second_worse_alert_escalates_without_repeating_steps() -> None:
    pbs = defaults()
    sa = demo_inventory().get("aws_iam:arn:aws:iam::123456789012:user/build-bot")
    assert sa is not None
    first = plan(alert("anomalous_api_use", "medium", "medium"), sa, pbs, PlanState())
    assert [s.action for s in first.steps] == [
        Action.notify, Action.reduce_scope, Action.force_reauth
    ]
    state = PlanState(
        applied_step_ids=_ids(first), applied_actions=[s.action for s in first.steps],
        rung=Action.force_reauth.rung, alerts_seen=2,
    )
    milder = plan(alert("anomalous_api_use", "low", "low", key="k2"), sa, pbs, state)
    assert milder.steps == []
    worse = plan(alert("anomalous_api_use", "high", "high", key="k3"), sa, pbs, state)
    assert _ids(worse) == ["anomalous-nhi-api-use:3:rotate", "anomalous-nhi-api-use:4:revoke"]
    assert all(s.approval is None for s in worse.steps)  # staging, high confidence: automatic


def test_critical_prod_service_account_rotates_only_with_its_owner() -> None:
    pbs = defaults()
    sa = demo_inventory().get("mock:sa-deploy")
    assert sa is not None and sa.environment == "prod"
    steps = {s.action: s for s in plan(alert("anomalous_api_use"), sa, pbs, PlanState()).steps}
    assert steps[Action.reduce_scope].approval is None
    rotate = steps[Action.rotate].approval
    assert rotate is not None and rotate.groups == ["user:alice"]
    assert [st.groups for st in rotate.escalation] == [["iam-admins", "soc-leads"]]
    assert steps[Action.notify].notify == ["user:alice", "platform-team", "soc-approvers"]


def test_alerts_seen_counts_the_current_one() -> None:
    pbs = defaults()
    alice = demo_inventory().get("mock:u-alice")
    assert alice is not None
    a = alert("risky_sign_in", "medium", "medium")
    once = plan(a, alice, pbs, PlanState())
    assert [s.action for s in once.steps] == [Action.notify, Action.force_reauth]
    # The workflow counts the current alert before planning: 1 is the first alert.
    assert plan(a, alice, pbs, PlanState(alerts_seen=1)) == once
    state = PlanState(applied_step_ids=_ids(once), alerts_seen=2)
    assert _ids(plan(a, alice, pbs, state)) == ["risky-sign-in:2:rotate"]


def test_owner_resolution_user_group_and_fallback() -> None:
    pb = playbook(ladder=[
        {"action": "notify", "notify": ["owner", "custodian", "soc-approvers", "owner"]},
        {"action": "rotate",
         "approval": {"groups": ["owner", "iam-admins"], "owner_must_approve": True}},
    ])
    a = alert("anomalous_api_use")
    by_user = plan(a, identity(owner="alice", custodian="group:ops"), [pb], PlanState()).steps
    assert by_user[0].notify == ["user:alice", "ops", "soc-approvers"]
    assert by_user[1].approval is not None
    assert by_user[1].approval.groups == ["user:alice", "iam-admins"]
    assert by_user[1].approval.owner_must_approve is True
    by_team = plan(a, identity(owner="group:platform-team"), [pb], PlanState()).steps
    assert by_team[0].notify == ["platform-team", "soc-approvers"]
    orphan = plan(a, identity(), [pb], PlanState()).steps
    assert orphan[0].notify == ["iam-admins", "soc-approvers"]
    assert orphan[1].approval is not None
    assert orphan[1].approval.groups == ["iam-admins"]
    assert orphan[1].approval.owner_must_approve is False


def test_waive_when_and_not() -> None:
    pb = playbook(ladder=[{
        "action": "revoke",
        "approval": {"groups": ["iam-admins"], "waive_when": {
            "confidence": "high", "not": {"environment": ["prod"], "criticality": "critical"}}},
    }])
    a = alert("anomalous_api_use", "high", "high")
    crit = identity(environment="prod", criticality="critical")
    assert plan(a, crit, [pb], PlanState()).steps[0].approval is not None
    dev = identity(environment="dev", criticality="critical")
    assert plan(a, dev, [pb], PlanState()).steps[0].approval is None
    low_conf = alert("anomalous_api_use", "high", "medium")
    assert plan(low_conf, dev, [pb], PlanState()).steps[0].approval is not None


def test_when_applied_sees_earlier_steps_of_the_same_plan() -> None:
    pb = playbook(ladder=[
        {"action": "reduce_scope", "when": {"severity": "critical"}},
        {"action": "force_reauth", "when": {"applied": ["reduce_scope"]}},
    ])
    assert plan(alert("anomalous_api_use", "high"), identity(), [pb], PlanState()).steps == []
    crit = plan(alert("anomalous_api_use", "critical"), identity(), [pb], PlanState())
    assert [s.action for s in crit.steps] == [Action.reduce_scope, Action.force_reauth]
    earlier = PlanState(applied_actions=[Action.reduce_scope])
    later = plan(alert("anomalous_api_use", "high"), identity(), [pb], earlier)
    assert [s.action for s in later.steps] == [Action.force_reauth]


def test_manual_containment_plans_up_to_the_requested_level() -> None:
    pbs = defaults()
    bob = demo_inventory().get("mock:u-bob")
    assert bob is not None

    def manual(level: object) -> list[str]:
        a = alert("manual", source="manual", raw={"level": level})
        p = plan(a, bob, pbs, PlanState())
        assert p.playbook == "manual-containment"
        return [s.action.value for s in p.steps]

    assert manual("notify") == ["notify"]
    assert manual("reduce_scope") == ["notify", "reduce_scope"]
    assert manual("revoke") == ["notify", "reduce_scope", "force_reauth", "rotate", "revoke"]
    assert manual("obliterate") == []
    assert manual(None) == []


def test_leaked_credential_ids_come_from_the_alert() -> None:
    pbs = defaults()
    sa = demo_inventory().get("mock:sa-deploy")
    assert sa is not None
    a = alert("leaked_secret", mentions=[
        {"name": "AKIAMOCKDEPLOY0001", "name_type": "access_key_id"},
        {"name": "alice@example.com", "name_type": "upn"},
    ])
    revoke = next(s for s in plan(a, sa, pbs, PlanState()).steps if s.action is Action.revoke)
    assert revoke.params == {"target": "credential", "credentials": ["AKIAMOCKDEPLOY0001"]}


def test_match_by_priority_then_name_and_no_match() -> None:
    low = playbook(name="b-low")
    also = playbook(name="a-also")
    high = playbook(name="z-high", priority=5)
    a = alert("anomalous_api_use")
    assert match(a, identity(), [low, also]) is also
    assert match(a, identity(), [low, also, high]) is high
    nothing = plan(alert("risky_sign_in"), identity(), [low], PlanState())
    assert nothing.playbook is None and nothing.steps == []
    assert "no playbook matches" in nothing.reason


def test_match_on_inventory_facts() -> None:
    pb = playbook(match={"categories": ["anomalous_api_use"], "environment": ["prod"],
                         "criticality": "high", "attributes": {"team": ["platform"]},
                         "identity_kinds": ["service_account"], "min_confidence": "medium"})
    a = alert("anomalous_api_use")
    good = identity(environment="prod", criticality="critical", attributes={"team": "platform"})
    assert match(a, good, [pb]) is pb
    assert match(a, good.model_copy(update={"environment": "dev"}), [pb]) is None
    assert match(a, good.model_copy(update={"criticality": None}), [pb]) is None
    assert match(a, good.model_copy(update={"attributes": {}}), [pb]) is None
    assert match(alert("anomalous_api_use", confidence="low"), good, [pb]) is None
    ex = explain(a, good.model_copy(update={"environment": "dev"}), [pb], PlanState())
    assert ex.candidates[0].reason == "environment dev is not one of prod"


def test_explain_gives_a_reason_for_every_step() -> None:
    pbs = defaults()
    alice = demo_inventory().get("mock:u-alice")
    assert alice is not None
    ex = explain(alert("risky_sign_in", "high", "medium"), alice, pbs, PlanState())
    assert [(d.step_id, d.planned) for d in ex.decisions] == [
        ("risky-sign-in:0:notify", True),
        ("risky-sign-in:1:force_reauth", True),
        ("risky-sign-in:2:rotate", False),
    ]
    assert ex.decisions[2].reason == "above force_reauth, the highest rung this alert allows"
    assert ex.ceiling is Action.force_reauth


_PURE = {"stanch.playbook.planner", "stanch.playbook.schema", "stanch.playbook.errors",
         "stanch.playbook.reversibility", "stanch.capabilities"}
_ALLOWED_ROOTS = {"__future__", "collections", "dataclasses", "datetime", "re", "typing",
                  "pydantic", "enum", "types", "hashlib"}


def test_planning_modules_import_only_pure_things() -> None:
    for module in _PURE:
        tree = ast.parse(Path(module.replace(".", "/") + ".py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in _ALLOWED_ROOTS or name == "stanch.models" or (
                    name in _PURE
                )
                assert ok, f"{module} imports {name}"


def test_importing_the_planner_does_not_load_yaml_or_the_loader() -> None:
    code = (
        "import sys; from stanch.playbook import plan, Playbook; "
        "bad = [m for m in ('yaml', 'stanch.playbook.loader', 'stanch.inventory') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
