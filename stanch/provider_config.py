"""What each provider type accepts in ``[providers.NAME]``: one model per adapter type.

``options`` and the two credential tables (``read_credentials``, ``action_credentials``) are
checked against the models below when the settings load, so a misspelt key stops start-up
with its name, the nearest known key and the file, instead of being ignored (a lost
``endpoint_url`` would send boto3 to real AWS). Credentials are ``SecretStr``; a value may be
a reference, ``env:NAME`` (that environment variable) or ``file:/path`` (that file's
contents, trailing newline dropped), resolved only where the adapter uses it.
docs/providers.md shows a complete example per type.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ProviderType = Literal["mock", "aws_iam", "okta", "entra", "scim", "ldap", "vault"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_reference(value: str) -> None:
    """``env:NAME`` needs a valid variable name and ``file:PATH`` a path; else ValueError."""
    if value.startswith("env:") and not _ENV_NAME.match(value[4:]):
        raise ValueError(f"env: reference needs a variable name, like env:OKTA_TOKEN "
                         f"(got env:{value[4:]!r})")
    if value.startswith("file:") and not value[5:].strip():
        raise ValueError("file: reference needs a path, like file:/run/secrets/token")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Options(_Strict):
    timeout: float = Field(default=20.0, gt=0, description="Seconds per provider call.")


class _Issuing(_Options):
    secret_drop_dir: str | None = Field(
        default=None, description="Where a newly issued secret is written (0600 file); "
        "without it the secret is discarded.")


class MockOptions(_Strict):
    url: str | None = Field(default=None, description="Mock IdP URL; default: [mock_idp].")
    timeout: float = Field(default=10.0, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0, description="Old name of timeout.")
    inline_retries: int = Field(default=2, ge=0, le=10)


class AwsIamOptions(_Issuing):
    endpoint_url: str | None = Field(
        default=None, description="IAM endpoint; set it for moto (http://127.0.0.1:5055). "
        "Unset means real AWS.")
    region: str = "us-east-1"
    profile: str | None = Field(default=None, description="Named profile for both sets.")
    read_profile: str | None = None
    action_profile: str | None = None
    max_attempts: int = Field(default=3, ge=1, le=20, description="botocore adaptive retries.")
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)


class OktaOptions(_Issuing):
    org_url: str = Field(description="https://YOUR-ORG.okta.com")
    auth_scheme: Literal["SSWS", "Bearer"] = "SSWS"


class EntraOptions(_Issuing):
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"


class ScimOptions(_Options):
    base_url: str = Field(description="SCIM 2.0 base URL, e.g. https://idp.example/scim/v2")


class LdapOptions(_Issuing):
    url: str = Field(description="ldap://host:389 or ldaps://host:636")
    base: str = Field(description="Where people live, e.g. ou=people,dc=example,dc=com")
    group_base: str | None = Field(default=None, description="Where groups live; default base.")


class VaultOptions(_Issuing):
    url: str = Field(description="https://vault.example:8200 (OpenBao works the same)")
    namespace: str | None = None
    verify: bool | str = Field(default=True, description="TLS verification, or a CA bundle.")
    approle_mount: str = "approle"
    max_token_scan: int = Field(default=5000, ge=1)


class _Creds(_Strict):
    @field_validator("*", mode="after")
    @classmethod
    def _references(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            check_reference(v.get_secret_value())
        return v


class NoCredentials(_Creds):
    pass


class AwsCredentials(_Creds):
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None


class TokenCredentials(_Creds):
    token: SecretStr | None = None


class EntraCredentials(_Creds):
    token: SecretStr | None = Field(default=None, description="A static bearer token, or:")
    tenant_id: SecretStr | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None


class LdapCredentials(_Creds):
    bind_dn: SecretStr | None = None
    password: SecretStr | None = None


OPTIONS: dict[str, type[BaseModel]] = {
    "mock": MockOptions, "aws_iam": AwsIamOptions, "okta": OktaOptions,
    "entra": EntraOptions, "scim": ScimOptions, "ldap": LdapOptions, "vault": VaultOptions,
}
CREDENTIALS: dict[str, type[BaseModel]] = {
    "mock": NoCredentials, "aws_iam": AwsCredentials, "okta": TokenCredentials,
    "entra": EntraCredentials, "scim": TokenCredentials, "ldap": LdapCredentials,
    "vault": TokenCredentials,
}


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"rename it to {close[0]!r}"
    return "remove it (known: " + (", ".join(known) or "none") + ")"


def check_table(kind: str, model: type[BaseModel], values: dict[str, Any]
                ) -> dict[str, Any]:
    """Validate one table against ``model``; errors name the key and the fix."""
    try:
        parsed = model.model_validate(values)
    except ValidationError as err:
        problems = []
        known = sorted(model.model_fields)
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(table)"
            if e["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown setting for a provider of type {kind}; "
                                f"fix: {_suggest(str(e['loc'][0]), known)}")
            elif e["type"] == "missing":
                problems.append(f"{key}: required for type {kind}; fix: set it (docs/providers.md)")
            else:
                problems.append(f"{key}: {e['msg'].removeprefix('Value error, ')}")
        raise ValueError("\n".join(problems)) from None
    return {k: v for k, v in values.items() if k in parsed.model_fields_set} | {
        k: getattr(parsed, k) for k in parsed.model_fields_set}
