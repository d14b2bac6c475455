"""`stanch playbook lint | simulate | test | schema` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from stanch.cli import app

runner = CliRunner()
FIXTURES = Path("playbooks/tests")
ARGS = ["--playbooks", "playbooks", "--inventory", "inventory", "--inventory",
        "examples/inventory"]


def test_lint_clean_defaults() -> None:
    result = runner.invoke(app, ["playbook", "lint", "playbooks"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_lint_prints_one_located_error_per_line() -> None:
    result = runner.invoke(app, ["playbook", "lint", "tests/playbooks/broken/bad-quorum.yaml",
                                 "tests/playbooks/broken/bad-action.yaml"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "tests/playbooks/broken/bad-quorum.yaml:14: ladder[2].approval.quorum: "
        "must be ≥ 1 (got 0)",
        "tests/playbooks/broken/bad-action.yaml:9: ladder[0].action: must be one of "
        "'notify', 'reduce_scope', 'force_reauth', 'rotate' or 'revoke' (got 'disable')",
    ]


def test_lint_json() -> None:
    result = runner.invoke(app, ["playbook", "lint", "--json",
                                 "tests/playbooks/broken/bad-quorum.yaml"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"ok": False, "errors": [{
        "file": "tests/playbooks/broken/bad-quorum.yaml", "line": 14,
        "path": "ladder[2].approval.quorum", "message": "must be ≥ 1 (got 0)",
    }]}


def test_simulate_twice_gives_the_same_plan() -> None:
    alert = FIXTURES / "anomalous-nhi-api-use--critical-prod-sa.alert.json"
    first = runner.invoke(app, ["playbook", "simulate", str(alert), "--json", *ARGS])
    second = runner.invoke(app, ["playbook", "simulate", str(alert), "--json", *ARGS])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    [run] = json.loads(first.stdout)
    assert run["identity"] == "mock:sa-deploy"
    assert run["playbook"] == "anomalous-nhi-api-use"
    waits = {s["id"]: s["approval"] for s in run["steps"]}
    assert waits["anomalous-nhi-api-use:1:reduce_scope"] is None
    assert waits["anomalous-nhi-api-use:3:rotate[AKIAMOCKDEPLOY0001]"] == ["user:alice"]


def test_simulate_human_output_says_who_each_step_waits_for() -> None:
    alert = FIXTURES / "leaked-secret--deploy-key-on-github.alert.json"
    result = runner.invoke(app, ["playbook", "simulate", str(alert), *ARGS])
    assert result.exit_code == 0, result.output
    assert "playbook leaked-secret" in result.stdout
    assert ("leaked-secret:2:rotate[AKIAMOCKDEPLOY0001]  waits for 1 of user:alice within "
            "30m, then deny") in result.stdout
    assert "leaked-secret:3:force_reauth  skipped" in result.stdout


def test_simulate_with_identity_and_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"applied_step_ids": ["risky-sign-in:0:notify",
                                                      "risky-sign-in:1:force_reauth"],
                                 "alerts_seen": 2}))
    alert = FIXTURES / "risky-sign-in--medium-needs-approval.alert.json"
    result = runner.invoke(app, ["playbook", "simulate", str(alert), "--identity",
                                 "mock:u-alice", "--state", str(state), "--json", *ARGS])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    assert run["identity"] == "mock:u-alice"
    assert [s["id"] for s in run["steps"]] == ["risky-sign-in:2:rotate"]


def test_simulate_raw_payload_through_ingest() -> None:
    raw = Path("tests/fixtures/alerts/crowdstrike/endpoint-credential-dumping.json")
    result = runner.invoke(app, ["playbook", "simulate", str(raw), "--source", "crowdstrike",
                                 "--json", *ARGS])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    assert (run["identity"], run["playbook"]) == ("mock:u-alice", "leaked-user-credential")


def test_simulate_refuses_a_raw_payload_without_source() -> None:
    raw = Path("tests/fixtures/alerts/crowdstrike/endpoint-credential-dumping.json")
    result = runner.invoke(app, ["playbook", "simulate", str(raw), *ARGS])
    assert result.exit_code == 1
    assert "not a normalized alert" in result.stderr and "--source" in result.stderr


def test_simulate_unknown_identity() -> None:
    alert = FIXTURES / "risky-sign-in--impossible-travel.alert.json"
    result = runner.invoke(app, ["playbook", "simulate", str(alert), "--identity", "mock:nobody",
                                 *ARGS])
    assert result.exit_code == 1
    assert "identity mock:nobody is not in the inventory" in result.stderr


def test_test_command_passes_on_defaults() -> None:
    result = runner.invoke(app, ["playbook", "test", str(FIXTURES), *ARGS])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    assert "PASS risky-sign-in--impossible-travel" in result.stdout


def test_test_command_fails_with_a_diff(tmp_path: Path) -> None:
    name = "privilege-escalation--new-admin-role"
    shutil.copy(FIXTURES / f"{name}.alert.json", tmp_path)
    expected = (FIXTURES / f"{name}.expected.yaml").read_text()
    (tmp_path / f"{name}.expected.yaml").write_text(
        expected.replace("privilege-escalation:1:reduce_scope", "privilege-escalation:1:revoke")
    )
    result = runner.invoke(app, ["playbook", "test", str(tmp_path), *ARGS])
    assert result.exit_code == 1
    assert f"FAIL {name}" in result.stdout
    assert "-- id: privilege-escalation:1:revoke" in result.stdout
    assert "+- id: privilege-escalation:1:reduce_scope" in result.stdout


def test_test_command_reports_a_bad_expected_file(tmp_path: Path) -> None:
    name = "risky-sign-in--impossible-travel"
    shutil.copy(FIXTURES / f"{name}.alert.json", tmp_path)
    (tmp_path / f"{name}.expected.yaml").write_text("expect:\n  playbok: risky-sign-in\n")
    result = runner.invoke(app, ["playbook", "test", str(tmp_path), *ARGS])
    assert result.exit_code == 1
    assert f"{tmp_path}/{name}.expected.yaml:2: expect.playbok: unknown field" in result.stdout


def test_schema_documents_every_field() -> None:
    result = runner.invoke(app, ["playbook", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    for model in [schema, *schema["$defs"].values()]:
        for name, field in model.get("properties", {}).items():
            assert field.get("description"), name
    assert "any" in schema["$defs"]["Condition"]["properties"]


def test_the_default_fixtures_pass_with_the_default_settings(tmp_path: Path) -> None:
    """The AWS fixtures' identities come from playbooks/tests/inventory.yaml (a link to
    examples/inventory/aws-iam.yaml): the demo inventory has none since they need moto."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    env["STANCH_CONFIG"] = str(tmp_path / "absent.toml")
    result = runner.invoke(app, ["playbook", "test"], env=env)
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.stderr
