"""The planner fits each step to what the identity's provider can do (stanch/capabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stanch.cli import app
from stanch.models import IdentityContext, IdentityKind, IdentityRef, PlanState
from stanch.playbook import explain
from tests.playbooks.helpers import alert, defaults, playbook


def _ldap_user(provider_type: str | None = "ldap") -> IdentityContext:
    return IdentityContext(
        ref=IdentityRef(provider="corp", id="uid=carol,ou=people,dc=stanch,dc=test",
                        kind=IdentityKind.user),
        owner="carol", provider_type=provider_type)


def test_leaked_credential_on_ldap_skips_force_reauth_and_rotates_without_factors() -> None:
    ex = explain(alert("leaked_secret", "high", "high"), _ldap_user(), defaults(), PlanState())
    assert ex.plan.playbook == "leaked-user-credential"
    steps = {s.action.value: s for s in ex.plan.steps}
    skipped = steps["force_reauth"]
    assert skipped.skipped is not None and not skipped.refused
    assert skipped.skipped.startswith("force_reauth: not supported by ldap, skipped")
    assert "force_reauth: not supported by ldap, skipped" in ex.plan.reason
    rotate = steps["rotate"]
    assert rotate.skipped is None
    assert rotate.params == {"credential": "password"}, "the fallback drops reset_factors"
    why = next(d.reason for d in ex.decisions if d.step is rotate)
    assert "ldap cannot honour reset_factors: true" in why and "fallback" in why


def test_unknown_provider_type_plans_as_before() -> None:
    typed = explain(alert("leaked_secret", "high", "high"), _ldap_user("mock"), defaults(),
                    PlanState())
    untyped = explain(alert("leaked_secret", "high", "high"), _ldap_user(None), defaults(),
                      PlanState())
    # The mock runs every action: the same steps, none skipped. (It declares its params, so
    # the rotate runs as its fallback without reset_factors, and its losses are declared.)
    assert [(s.step_id, s.action) for s in typed.plan.steps] == \
        [(s.step_id, s.action) for s in untyped.plan.steps]
    assert all(s.skipped is None for s in typed.plan.steps)
    assert all(not s.loses for s in untyped.plan.steps), "untyped: nothing to declare from"


def test_a_parameter_the_provider_cannot_honour_is_refused_at_plan_time() -> None:
    pb = playbook(match={"categories": ["leaked_secret"]},
                  ladder=[{"action": "rotate", "params": {"reset_factors": True}}])
    ex = explain(alert("leaked_secret"), _ldap_user(), [pb], PlanState())
    [step] = ex.plan.steps
    assert step.refused and step.skipped is not None
    assert "ldap cannot honour reset_factors: true, refused" in step.skipped


def test_fallback_to_another_action() -> None:
    pb = playbook(match={"categories": ["leaked_secret"]},
                  ladder=[{"action": "force_reauth", "fallback": {"action": "revoke"}}])
    ex = explain(alert("leaked_secret"), _ldap_user(), [pb], PlanState())
    [step] = ex.plan.steps
    assert step.skipped is None and step.action.value == "revoke"
    assert step.step_id == "pb:0:revoke"
    # once the fallback ran, a later alert does not plan it again (its id is what ran)
    again = explain(alert("leaked_secret"), _ldap_user(), [pb],
                    PlanState(applied_step_ids=["pb:0:revoke"], applied_actions=["revoke"]))
    assert again.plan.steps == []
    [decision] = again.decisions
    assert not decision.planned and decision.reason.endswith("already applied")


def test_simulate_shows_the_skip_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    (tmp_path / "inv.yaml").write_text(
        "identities:\n  - {provider: corp, id: 'uid=carol,ou=people,dc=stanch,dc=test', "
        "kind: user, owner: carol}\n")
    config = tmp_path / "stanch.toml"
    config.write_text('inventory_paths = ["%s"]\n[providers.corp]\ntype = "ldap"\n'
                      '[providers.corp.options]\nurl = "ldap://127.0.0.1:1"\n'
                      'base = "dc=stanch,dc=test"\n' % (tmp_path / "inv.yaml"))
    monkeypatch.setenv("STANCH_CONFIG", str(config))
    a = alert("leaked_secret", "high", "high", mentions=[
        {"name": "corp:uid=carol,ou=people,dc=stanch,dc=test", "name_type": "provider_id"}])
    (tmp_path / "alert.json").write_text(a.model_dump_json())
    result = CliRunner().invoke(app, ["playbook", "simulate", str(tmp_path / "alert.json"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["leaked-user-credential:1:force_reauth"]["skipped"].startswith(
        "force_reauth: not supported by ldap, skipped")
    assert steps["leaked-user-credential:2:rotate"]["params"] == {"credential": "password"}
    human = CliRunner().invoke(app, ["playbook", "simulate", str(tmp_path / "alert.json")],
                               env={"COLUMNS": "250"})
    assert "leaked-user-credential:1:force_reauth  skipped: force_reauth: not supported by " \
           "ldap" in human.stdout


def test_an_action_for_other_kinds_is_skipped_for_this_kind() -> None:
    """Okta rotates OAuth app secrets; a person's password reset is not an API call there."""
    okta_user = IdentityContext(
        ref=IdentityRef(provider="okta", id="00u1abcd2EFGH3ijk4l5", kind=IdentityKind.user),
        owner="alice", provider_type="okta")
    ex = explain(alert("risky_sign_in", "critical", "high"), okta_user, defaults(),
                 PlanState())
    steps = {s.action.value: s for s in ex.plan.steps}
    assert steps["force_reauth"].skipped is None
    assert steps["rotate"].skipped == "rotate: not supported by okta for a user, skipped"


def test_a_fallback_never_climbs_above_the_ceiling() -> None:
    pb = playbook(match={"categories": ["leaked_secret"]},
                  rules=[{"when": {"severity": "medium"}, "up_to": "force_reauth"}],
                  ladder=[{"action": "force_reauth", "fallback": {"action": "revoke"}}])
    [step] = explain(alert("leaked_secret"), _ldap_user(), [pb], PlanState()).plan.steps
    assert step.skipped is not None and "above force_reauth" in step.skipped
    assert step.action.value == "revoke" and not step.refused
