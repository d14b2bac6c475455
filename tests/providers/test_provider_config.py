"""Credentials (config, environment, secret files) and building adapters from settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from activities.providers._credentials import credential, require
from activities.providers.base import IdentityProvider, PermanentProviderError
from activities.providers.registry import build_provider
from stanch.config import ConfigError, ProviderSettings, Settings, load_settings

OKTA = {"org_url": "https://x.okta.com"}


def test_file_and_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("STANCH_TEST_TOKEN", "from-env")
    conf = ProviderSettings(type="okta", options=OKTA,
                            read_credentials={"token": SecretStr(f"file:{secret}")},
                            action_credentials={"token": SecretStr("env:STANCH_TEST_TOKEN")})
    assert credential(conf, "read", "token", provider="p") == "from-file"
    assert credential(conf, "action", "token", provider="p") == "from-env"


def test_one_set_serves_both_and_env_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = ProviderSettings(type="okta", options=OKTA,
                            read_credentials={"token": SecretStr("only")})
    assert credential(conf, "action", "token", provider="p") == "only"
    monkeypatch.setenv("OKTA_API_TOKEN", "env-default")
    empty = ProviderSettings(type="okta", options=OKTA)
    assert credential(empty, "read", "token", provider="p", env="OKTA_API_TOKEN") == \
        "env-default"


def test_errors_name_the_setting_never_the_value(tmp_path: Path) -> None:
    conf = ProviderSettings(type="okta", options=OKTA, read_credentials={
        "token": SecretStr(f"file:{tmp_path}/missing")})
    with pytest.raises(PermanentProviderError, match="cannot read secret file"):
        credential(conf, "read", "token", provider="p")
    with pytest.raises(PermanentProviderError, match=r"action_credentials\.token"):
        require(ProviderSettings(type="okta", options=OKTA), "action", "token", provider="p")
    env_ref = ProviderSettings(type="okta", options=OKTA, read_credentials={
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
    ("mock", {"url": "http://127.0.0.1:1"}, {}),
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
def test_missing_required_option_stops_loading_and_is_named(kind: str, missing: str) -> None:
    with pytest.raises(ConfigError, match=rf"providers\.p\.options\.{missing} .*required"):
        load_settings(providers={"p": {"type": kind}})


def test_misspelt_option_names_the_setting_the_file_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "stanch.toml"
    toml.write_text('[providers.aws]\ntype = "aws_iam"\n[providers.aws.options]\n'
                    'endpoint_ur = "http://127.0.0.1:5055"\n')
    monkeypatch.setenv("STANCH_CONFIG", str(toml))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [line] = str(caught.value).splitlines()[1:]
    assert line.strip() == (
        f"{toml}: setting providers.aws.options.endpoint_ur "
        "[STANCH_PROVIDERS__AWS__OPTIONS__ENDPOINT_UR]: unknown setting for a provider of "
        "type aws_iam; fix: rename it to 'endpoint_url'")


def test_unknown_credential_and_bad_references_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"read_credentials\.tokn .*rename it to 'token'"):
        load_settings(providers={"s": {"type": "scim", "options": {"base_url": "http://x"},
                                       "read_credentials": {"tokn": "t"}}})
    with pytest.raises(ConfigError, match=r"env: reference needs a variable name"):
        load_settings(providers={"s": {"type": "scim", "options": {"base_url": "http://x"},
                                       "read_credentials": {"token": "env:NOT A NAME"}}})
    with pytest.raises(ConfigError, match=r"providers\.x\.type"):
        load_settings(providers={"x": {"type": "aws"}})


def test_secrets_never_reach_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(providers={"l": {"type": "ldap", "options": {"url": "ldap://x"},
                                       "read_credentials": {"pasword": "hunter2-secret"}}})
    assert "hunter2-secret" not in str(caught.value)
    assert "rename it to 'password'" in str(caught.value)


def test_mock_stays_unless_disabled_on_purpose() -> None:
    declared = load_settings(providers={"s": {"type": "scim",
                                              "options": {"base_url": "http://x"}}})
    assert sorted(declared.providers) == ["mock", "s"]
    removed = load_settings(providers={"mock": {"type": "mock", "enabled": False},
                                       "s": {"type": "scim", "options": {"base_url": "http://x"}}})
    assert sorted(removed.providers) == ["s"]
