"""`stanch providers check` against each local server: moto, scim2-server, slapd, OpenBao
and the mock IdP. It reads one identity with the read credentials, checks they see what
verification needs, and says what the action credentials may do."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import hvac
import ldap3
import pytest
from typer.testing import CliRunner

from stanch.cli import app

from .conftest import BAO_ROOT, LDAP_ROOT_DN, LDAP_ROOT_PW, SCIM_TOKEN
from .test_ldap import BASE, make_user
from .test_vault import make_entity, root  # noqa: F401  (root is a fixture)

runner = CliRunner()


def _check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, identities: str,
           *args: str) -> Any:
    (tmp_path / "inv").mkdir(exist_ok=True)
    (tmp_path / "inv" / "ids.yaml").write_text("identities:\n" + identities)
    config = tmp_path / "stanch.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                      f'inventory_paths = ["{tmp_path / "inv"}"]\n' + toml)
    monkeypatch.setenv("STANCH_CONFIG", str(config))
    return runner.invoke(app, ["providers", "check", *args])


def test_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str) -> None:
    iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"bot-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.create_access_key(UserName=name)
    result = _check(tmp_path, monkeypatch, f"""
[providers.aws]
type = "aws_iam"
[providers.aws.options]
endpoint_url = "{moto_url}"
max_attempts = 1
[providers.aws.read_credentials]
access_key_id = "testing"
secret_access_key = "testing"
""", f"  - {{provider: aws, id: 'arn:aws:iam::123456789012:user/{name}', "
         "kind: service_account}\n", "aws")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ok   aws read: read arn:aws:iam::123456789012:user/{name} "
                               "(access_keys 1")
    acts = [line for line in lines if " aws act: " in line]
    # moto has no policy simulator: each action says it was not simulated, and why
    assert {a.split(": ")[1] for a in acts} == {"reduce_scope", "force_reauth", "rotate",
                                                  "revoke"}
    assert all("not simulated" in a or "allowed" in a for a in acts), acts


def test_scim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scim_url: str) -> None:
    user = httpx.post(f"{scim_url}/Users", headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
                      json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": f"u-{uuid.uuid4().hex[:8]}"}).json()
    toml = f"""
[providers.hr]
type = "scim"
[providers.hr.options]
base_url = "{scim_url}"
[providers.hr.read_credentials]
token = "{SCIM_TOKEN}"
"""
    ids = f"  - {{provider: hr, id: '{user['id']}', kind: user}}\n"
    result = _check(tmp_path, monkeypatch, toml, ids, "hr")
    assert result.exit_code == 0, result.output
    assert "ok   hr act: the action credentials authenticate; may reduce_scope, revoke" in \
        result.output
    bad = _check(tmp_path, monkeypatch, toml.replace(f'token = "{SCIM_TOKEN}"',
                                                     'token = "wrong"'), ids, "hr")
    assert bad.exit_code == 1
    assert bad.output.startswith(f"FAIL hr read: cannot read {user['id']}")
    assert "wrong" not in bad.output


LDAP_TOML = """
[providers.corp]
type = "ldap"
[providers.corp.options]
url = "{url}"
base = "ou=people,{base}"
group_base = "ou=groups,{base}"
[providers.corp.read_credentials]
bind_dn = "{reader}"
password = "{reader_pw}"
[providers.corp.action_credentials]
bind_dn = "{root}"
password = "{root_pw}"
"""


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Any:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


@pytest.mark.parametrize(("reader", "reader_pw", "ok"), [
    (f"cn=reader,{BASE}", "reader-pw", True),
    (f"cn=blind-reader,{BASE}", "blind-reader-pw", False),
])
def test_slapd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ldap_url: str,
               admin: ldap3.Connection, reader: str, reader_pw: str, ok: bool) -> None:
    ref = make_user(admin)
    toml = LDAP_TOML.format(url=ldap_url, base=BASE, reader=reader, reader_pw=reader_pw,
                            root=LDAP_ROOT_DN, root_pw=LDAP_ROOT_PW)
    result = _check(tmp_path, monkeypatch, toml,
                    f"  - {{provider: corp, id: '{ref.id}', kind: user}}\n", "corp")
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ok   corp read: read {ref.id} (groups 2, locked False")
    assert f"ok   corp act: bound as dn:{LDAP_ROOT_DN}; may reduce_scope, rotate, revoke" in \
        result.output
    if ok:
        assert result.exit_code == 0, result.output
        assert "ok   corp verify: the password attribute is visible" in result.output
    else:
        assert result.exit_code == 1
        assert lines[1] == (
            f"FAIL corp verify: the read account cannot see userPassword of {ref.id}, so "
            "rotate cannot verify a password change (it refuses to run); fix: grant the "
            "read account read access to userPassword (slapd: `access to attrs=userPassword "
            "by dn.exact=\"READ-DN\" read`), or use an account that has it")
        assert reader_pw not in result.output and LDAP_ROOT_PW not in result.output


def test_openbao(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bao_url: str,
                 root: hvac.Client) -> None:  # noqa: F811
    ref = make_entity(root, bao_url, logins=1)
    root.sys.create_or_update_policy("read-only-ident", 'path "identity/*" '
                                     '{ capabilities = ["read", "list"] }')
    weak = root.auth.token.create(policies=["read-only-ident"], ttl="10m")["auth"]
    toml = f"""
[providers.bao]
type = "vault"
[providers.bao.options]
url = "{bao_url}"
[providers.bao.read_credentials]
token = "{BAO_ROOT}"
[providers.bao.action_credentials]
token = "{{action}}"
"""
    ids = f"  - {{provider: bao, id: '{ref.id}', kind: user}}\n"
    strong = _check(tmp_path, monkeypatch, toml.replace("{action}", BAO_ROOT), ids, "bao")
    assert strong.exit_code == 0, strong.output
    assert "ok   bao act: revoke: allowed (capabilities-self)" in strong.output
    denied = _check(tmp_path, monkeypatch, toml.replace("{action}", weak["client_token"]),
                    ids, "bao")
    assert denied.exit_code == 1
    assert f"FAIL bao act: revoke: denied on identity/entity/id/{ref.id}" in denied.output
    assert weak["client_token"] not in denied.output


def test_mock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_idp: str) -> None:
    result = _check(tmp_path, monkeypatch, f'[providers.mock]\ntype = "mock"\n'
                    f'[providers.mock.options]\nurl = "{mock_idp}"\n',
                    "  - {provider: mock, id: u-alice, kind: user}\n", "mock")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("ok   mock read: read u-alice (")
    assert ("ok   mock act: may reduce_scope, force_reauth, rotate, revoke (the mock IdP "
            "checks no permission)") in result.output


def test_unknown_provider_and_no_identity(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    result = _check(tmp_path, monkeypatch, "", "", "nope")
    assert result.exit_code == 2 and "provider 'nope' is not configured" in result.output
    empty = _check(tmp_path, monkeypatch, "", "", "mock")
    assert empty.exit_code == 1
    assert empty.output.startswith("FAIL mock read: no identity to read; fix: add one")
