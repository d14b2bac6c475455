"""Credentials (config, environment, secret files) and building adapters from settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from activities.providers._credentials import credential, require
from activities.providers.base import IdentityProvider, PermanentProviderError
from activities.providers.registry import build_provider
from stanch.config import ProviderSettings, Settings


def test_file_and_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("STANCH_TEST_TOKEN", "from-env")
    conf = ProviderSettings(type="okta",
                            read_credentials={"token": SecretStr(f"file:{secret}")},
                            action_credentials={"token": SecretStr("env:STANCH_TEST_TOKEN")})
    assert credential(conf, "read", "token", provider="p") == "from-file"
    assert credential(conf, "action", "token", provider="p") == "from-env"


def test_one_set_serves_both_and_env_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = ProviderSettings(type="okta", read_credentials={"token": SecretStr("only")})
    assert credential(conf, "action", "token", provider="p") == "only"
    monkeypatch.setenv("OKTA_API_TOKEN", "env-default")
    empty = ProviderSettings(type="okta")
    assert credential(empty, "read", "token", provider="p", env="OKTA_API_TOKEN") == \
        "env-default"


def test_errors_name_the_setting_never_the_value(tmp_path: Path) -> None:
    conf = ProviderSettings(type="okta", read_credentials={
        "token": SecretStr(f"file:{tmp_path}/missing")})
    with pytest.raises(PermanentProviderError, match="cannot read secret file"):
        credential(conf, "read", "token", provider="p")
    with pytest.raises(PermanentProviderError, match=r"action_credentials\.token"):
        require(ProviderSettings(type="okta"), "action", "token", provider="p")
    env_ref = ProviderSettings(type="okta", read_credentials={
        "token": SecretStr("env:STANCH_SURELY_UNSET_VAR")})
    with pytest.raises(PermanentProviderError, match="STANCH_SURELY_UNSET_VAR is not set"):
        credential(env_ref, "read", "token", provider="p")


@pytest.mark.parametrize(("kind", "options", "creds"), [
    ("aws_iam", {"endpoint_url": "http://127.0.0.1:1"}, {"access_key_id": "a",
                                                         "secret_access_key": "b"}),
    ("scim", {"base_url": "http://127.0.0.1:1"}, {"token": "t"}),
    ("vault", {"url": "http://127.0.0.1:1"}, {"token": "t"}),
    ("ldap", {"url": "ldap://127.0.0.1:1", "base": "dc=x"}, {"bind_dn": "cn=a",
                                                             "password": "p"}),
    ("okta", {"org_url": "https://x.okta.com"}, {"token": "t"}),
    ("entra", {}, {"token": "t"}),
])
async def test_registry_builds_every_adapter(kind: str, options: dict[str, str],
                                             creds: dict[str, str]) -> None:
    settings = Settings(providers={"p": ProviderSettings(
        type=kind, options=options,
        read_credentials={k: SecretStr(v) for k, v in creds.items()})})
    provider = build_provider("p", settings)
    assert isinstance(provider, IdentityProvider)
    assert provider.name == "p"
    await provider.aclose()


@pytest.mark.parametrize(("kind", "missing"), [
    ("scim", "base_url"), ("vault", "url"), ("ldap", "url"), ("okta", "org_url")])
def test_missing_required_option_is_named(kind: str, missing: str) -> None:
    settings = Settings(providers={"p": ProviderSettings(type=kind)})
    with pytest.raises(PermanentProviderError, match=missing):
        build_provider("p", settings)
