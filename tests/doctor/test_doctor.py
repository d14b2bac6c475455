"""`stanch doctor`, and `stanch up` refusing to start on what it finds (issue 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LDAP_USER = """
identities:
  - provider: corp
    id: uid=carol,ou=people,dc=stanch,dc=test
    kind: user
    owner: carol
"""
CORP_LDAP = """
[providers.corp]
type = "ldap"
[providers.corp.options]
url = "ldap://127.0.0.1:1"
base = "ou=people,dc=stanch,dc=test"
"""


def _stanch(tmp_path: Path, command: str, toml: str, inventory: str | None = None,
            playbooks: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    if inventory is not None:
        (inv / "ids.yaml").write_text(inventory)
    pbs = REPO / "playbooks"
    if playbooks is not None:
        pbs = tmp_path / "playbooks"
        pbs.mkdir(exist_ok=True)
        for name, text in playbooks.items():
            (pbs / name).write_text(text)
    config = tmp_path / "stanch.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\nplaybooks_dir = "{pbs}"\n'
                      f'inventory_paths = ["{inv}"]\n' + toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    env["STANCH_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "stanch.cli", *command.split()], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def _problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in result.stderr.splitlines()
            if line.strip() and not line.startswith(("stanch up:", "invalid configuration"))]


def test_a_misspelt_provider_option_stops_up(tmp_path: Path) -> None:
    result = _stanch(tmp_path, "up", '[providers.aws]\ntype = "aws_iam"\n'
                     '[providers.aws.options]\nendpoint_ur = "http://127.0.0.1:5055"\n')
    assert result.returncode == 2, result.stderr
    [line] = _problem_lines(result)
    assert line == (f"{tmp_path / 'stanch.toml'}: setting providers.aws.options.endpoint_ur "
                    "[STANCH_PROVIDERS__AWS__OPTIONS__ENDPOINT_UR]: unknown setting for a "
                    "provider of type aws_iam; fix: rename it to 'endpoint_url'")


def test_an_unknown_provider_in_the_inventory_stops_up(tmp_path: Path) -> None:
    result = _stanch(tmp_path, "up", "", inventory=LDAP_USER)
    assert result.returncode == 2, result.stderr
    [line] = _problem_lines(result)
    assert line.startswith(f"{tmp_path / 'inventory' / 'ids.yaml'}:3: identities[0].provider: "
                           "provider 'corp' of corp:uid=carol")
    assert "fix: add [providers.corp] with its type to" in line


def test_an_iam_user_given_by_bare_name_as_a_service_account_stops_up(tmp_path: Path) -> None:
    result = _stanch(tmp_path, "up", '[providers.aws_iam]\ntype = "aws_iam"\n'
                     '[providers.aws_iam.options]\nendpoint_url = "http://127.0.0.1:1"\n',
                     inventory="identities:\n  - provider: aws_iam\n    id: build-bot\n"
                               "    kind: service_account\n")
    assert result.returncode == 2, result.stderr
    [line] = _problem_lines(result)
    assert line.startswith(f"{tmp_path / 'inventory' / 'ids.yaml'}:2: identities[0].id: "
                           "aws_iam:build-bot: a bare name of a service_account means an IAM "
                           "*role*")
    assert "fix: write the ARN: id: arn:aws:iam::ACCOUNT:user/build-bot for an IAM user" in line


NO_PROVIDER_STEP = """
name: sessions-only
match: {categories: [risky_sign_in], identity_kinds: [user]}
rules: [{when: {severity: medium}, up_to: force_reauth}]
ladder:
  - action: notify
    notify: [soc]
  - action: force_reauth
    accept_loss: [leases, sessions]
"""


def test_a_step_no_provider_supports_stops_up(tmp_path: Path) -> None:
    result = _stanch(tmp_path, "up", CORP_LDAP + '[providers.mock]\ntype = "mock"\n'
                     'enabled = false\n', inventory=LDAP_USER,
                     playbooks={"sessions-only.yaml": NO_PROVIDER_STEP})
    assert result.returncode == 2, result.stderr
    [line] = _problem_lines(result)
    assert line.startswith(f"{tmp_path / 'playbooks' / 'sessions-only.yaml'}:8: "
                           "sessions-only: ladder[1].action: force_reauth — no provider it "
                           "may run on can do it (ldap: LDAP has no sessions")
    assert "fix: mark the step `optional: true`" in line


def test_doctor_accepts_the_defaults_with_ldap_users(tmp_path: Path) -> None:
    """The default playbooks mark force_reauth optional and rotate's reset_factors has a
    fallback, so an LDAP directory of people passes."""
    result = _stanch(tmp_path, "doctor", CORP_LDAP, inventory=LDAP_USER)
    assert result.returncode == 0, result.stdout + result.stderr


def test_doctor_names_an_unset_env_reference(tmp_path: Path) -> None:
    result = _stanch(tmp_path, "doctor", CORP_LDAP + '[providers.corp.read_credentials]\n'
                     'password = "env:STANCH_TEST_SURELY_UNSET"\n', inventory=LDAP_USER)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"{tmp_path / 'stanch.toml'}: providers.corp.read_credentials.password: environment "
        "variable STANCH_TEST_SURELY_UNSET is not set; fix: export STANCH_TEST_SURELY_UNSET "
        "in the environment of every Stanch process, or point the setting at a file: "
        "reference")


@pytest.mark.parametrize("command", ["worker", "api"])
def test_worker_and_api_run_the_doctor_too(tmp_path: Path, command: str) -> None:
    result = _stanch(tmp_path, command, "", inventory=LDAP_USER)
    assert result.returncode == 2
    assert "provider 'corp' of corp:uid=carol" in result.stderr


def test_the_demo_and_the_moto_example_pass(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    for config in ("stanch.toml-that-does-not-exist", "examples/stanch-moto.toml"):
        result = subprocess.run([sys.executable, "-m", "stanch.cli", "doctor"],
                                env={**env, "STANCH_CONFIG": config}, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (config, result.stdout, result.stderr)
