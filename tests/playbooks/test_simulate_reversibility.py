"""`stanch playbook simulate` shows, per step, what it changes, what rollback cannot restore
and which steps wait for approval because of it — read from the identity's adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stanch.cli import app

runner = CliRunner()

INVENTORY = """
identities:
  - provider: aws
    id: arn:aws:iam::123456789012:user/ci-deployer
    kind: service_account
    display_name: CI deployer (IAM user)
    owner: dana
    environment: staging
    criticality: medium
    usernames: [ci-deployer]
    access_key_ids: [AKIACIDEPLOYER000001]
  - provider: corp-ldap
    id: uid=erin,ou=people,dc=example,dc=com
    kind: user
    display_name: Erin
    owner: erin
    emails: [erin@example.com]
"""

CONFIG = """
[providers.aws]
type = "aws_iam"
[providers.corp-ldap]
type = "ldap"
options = {url = "ldap://127.0.0.1:1389", base = "dc=example,dc=com"}
"""

GUARDDUTY = {
    "version": "0", "id": "evt-1", "detail-type": "GuardDuty Finding",
    "source": "aws.guardduty", "account": "123456789012", "time": "2026-12-01T09:05:11Z",
    "detail": {
        "id": "finding-ci-deployer-1",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "title": "Credentials of IAM user ci-deployer used from an external IP address.",
        "severity": 9.2,
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": {
            "accessKeyId": "AKIACIDEPLOYER000001", "userName": "ci-deployer",
            "userType": "IAMUser"}},
        "service": {"eventFirstSeen": "2026-12-01T08:55:40.000Z"},
    },
}

LEAK = {
    "id": "alert-ldap-leak-1", "source": "crowdstrike", "source_alert_id": "leak-1",
    "dedup_key": "leak-1", "title": "Password of erin found in a breach corpus",
    "category": "leaked_secret", "severity": "high", "confidence": "high",
    "mentions": [{"name": "erin@example.com", "name_type": "email"}],
    "received_at": "2026-12-01T10:00:00Z", "raw": {},
}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "stanch.toml").write_text(CONFIG)
    (tmp_path / "guardduty.json").write_text(json.dumps(GUARDDUTY))
    (tmp_path / "leak.json").write_text(json.dumps(LEAK))
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "stanch.toml"))
    return tmp_path


def _simulate(d: Path, *args: str) -> str:
    result = runner.invoke(app, ["playbook", "simulate", *args, "--playbooks", "playbooks",
                                 "--inventory", str(d / "inventory.yaml")])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_guardduty_finding_for_an_iam_user(setup: Path) -> None:
    out = _simulate(setup, str(setup / "guardduty.json"), "--source", "guardduty")
    assert "playbook leaked-secret" in out
    revoke = out.split("leaked-secret:1:revoke[AKIACIDEPLOYER000001]")[1].split("leaked-sec")[0]
    assert "changes: deactivates the named access keys" in revoke
    assert "rollback restores: exactly those keys, active again" in revoke
    assert "rollback cannot restore" not in revoke
    rotate = out.split("leaked-secret:2:rotate[AKIACIDEPLOYER000001]")[1].split("leaked-sec")[0]
    assert "never deletes" in rotate and "rollback cannot restore" not in rotate
    reauth = out.split("leaked-secret:3:force_reauth")[1]
    assert "rollback cannot restore: sessions" in reauth
    assert "needs approval because" not in out  # the playbook accepts losing sessions

    data = json.loads(_simulate(setup, str(setup / "guardduty.json"), "--source", "guardduty",
                                "--json"))
    steps = {s["id"]: s for s in data[0]["steps"]}
    assert steps["leaked-secret:3:force_reauth"]["loses"] == ["sessions"]
    assert steps["leaked-secret:1:revoke[AKIACIDEPLOYER000001]"]["loses"] == []


def test_leaked_credential_for_an_ldap_user(setup: Path) -> None:
    out = _simulate(setup, str(setup / "leak.json"))
    assert "playbook leaked-user-credential" in out
    assert "force_reauth: not supported by ldap, skipped (LDAP has no sessions" in out
    rotate = out.split("leaked-user-credential:2:rotate")[1]
    # waive_when holds (high/high), but the password and the failed-login record are lost
    assert "waits for 1 of soc-approvers" in rotate.splitlines()[0]
    assert "rollback cannot restore: old_secret" in rotate
    assert "rollback cannot restore: failed_login_history" in rotate
    assert "needs approval because rotate on ldap loses old_secret, failed_login_history" \
        in rotate
    data = json.loads(_simulate(setup, str(setup / "leak.json"), "--json"))
    steps = {s["id"]: s for s in data[0]["steps"]}
    gated = steps["leaked-user-credential:2:rotate"]
    assert gated["approval"] == ["soc-approvers"] and gated["loss_gate"]
