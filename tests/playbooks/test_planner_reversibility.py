"""The planner reads the adapter's declarations: losses gate approval, steps carry what they
change, and a step is identified by what it acts on."""

from __future__ import annotations

from stanch.models import Action, IdentityContext, IdentityKind, IdentityRef, PlanState
from stanch.playbook import plan
from tests.playbooks.helpers import alert, identity, playbook


def _ldap_user() -> IdentityContext:
    return IdentityContext(ref=IdentityRef(provider="corp", id="uid=erin,dc=x",
                                           kind=IdentityKind.user), provider_type="ldap")


def test_a_loss_not_accepted_needs_a_human_even_when_waived() -> None:
    pb = playbook(ladder=[{"action": "rotate", "approval": {
        "groups": ["soc"], "waive_when": {"severity": "high"}, "on_timeout": "approve"}}])
    [step] = plan(alert("anomalous_api_use"), _ldap_user(), [pb], PlanState()).steps
    assert step.loses == ["old_secret", "failed_login_history"]
    assert step.approval is not None and step.approval.groups == ["soc"]
    assert step.approval.on_timeout.value == "deny"  # a loss is never approved by a timeout
    assert "rotate on ldap loses old_secret, failed_login_history" in step.loss_gate
    # the same step on the mock IdP loses nothing: the waiver holds
    [mock] = plan(alert("anomalous_api_use"), identity(), [pb], PlanState()).steps
    assert mock.loses == [] and mock.approval is None and mock.undo_restores


def test_accept_loss_waives_only_the_losses_it_names() -> None:
    pb = playbook(ladder=[{"action": "rotate", "accept_loss": ["old_secret"]}],
                  owner_fallback=["iam-admins"])
    [step] = plan(alert("anomalous_api_use"), _ldap_user(), [pb], PlanState()).steps
    assert step.approval is not None and step.approval.groups == ["iam-admins"]
    assert "failed_login_history" in step.loss_gate and "old_secret" not in step.loss_gate
    pb = playbook(ladder=[{"action": "rotate",
                           "accept_loss": ["old_secret", "failed_login_history"]}])
    [step] = plan(alert("anomalous_api_use"), _ldap_user(), [pb], PlanState()).steps
    assert step.approval is None and not step.loss_gate and step.loses


def test_steps_are_identified_by_the_grant_they_act_on() -> None:
    pb = playbook(ladder=[{"action": "reduce_scope", "params": {"only_new_grants": True}}])
    sa = identity()
    a1 = alert("anomalous_api_use", key="a1").model_copy(update={"grants": ["Domain Admins"]})
    [first] = plan(a1, sa, [pb], PlanState()).steps
    assert first.step_id == "pb:0:reduce_scope[Domain Admins]"
    assert first.target == ["Domain Admins"]
    assert first.params["new_grants"] == ["Domain Admins"]
    state = PlanState(applied_step_ids=[first.step_id], applied_actions=[Action.reduce_scope],
                      alerts_seen=2)
    a2 = alert("anomalous_api_use", key="a2").model_copy(update={"grants": ["Backup Ops"]})
    [second] = plan(a2, sa, [pb], state).steps
    assert second.step_id == "pb:0:reduce_scope[Backup Ops]"
    a3 = alert("anomalous_api_use", key="a3").model_copy(update={"grants": ["Domain Admins"]})
    assert plan(a3, sa, [pb], state).steps == []
    # a history recorded before per-target steps plans as it did then
    legacy = plan(a2, sa, [pb], PlanState(applied_step_ids=["pb:0:reduce_scope"]),
                  declared=False)
    assert legacy.steps == []


def test_rotate_names_the_credentials_the_alert_names() -> None:
    pb = playbook(ladder=[{"action": "rotate"}])
    a = alert("anomalous_api_use", mentions=[{"name": "AKIAEXAMPLE000000001",
                                              "name_type": "access_key_id"}])
    [step] = plan(a, identity(), [pb], PlanState()).steps
    assert step.step_id == "pb:0:rotate[AKIAEXAMPLE000000001]"
    assert step.params["credentials"] == ["AKIAEXAMPLE000000001"]


def test_long_targets_are_digested_and_unknown_adapters_declare_nothing() -> None:
    pb = playbook(ladder=[{"action": "reduce_scope", "params": {"only_new_grants": True}}])
    grant = "arn:aws:iam::123456789012:policy/" + "x" * 80
    a = alert("anomalous_api_use").model_copy(update={"grants": [grant]})
    [step] = plan(a, identity(), [pb], PlanState()).steps
    assert step.step_id.startswith("pb:0:reduce_scope[sha256:") and len(step.step_id) < 60
    other = IdentityContext(ref=IdentityRef(provider="custom", id="x",
                                            kind=IdentityKind.user))
    [plain] = plan(a, other, [pb], PlanState()).steps
    assert plain.changes == [] and plain.loses == [] and not plain.loss_gate
