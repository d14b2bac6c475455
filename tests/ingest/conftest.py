from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from stanch.config import Settings, SourceAuth
from stanch.ingest import DeadLetterStore

NOW = datetime(2025, 3, 4, 9, 15, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"

WHSEC_OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHSEC_NEW = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="

# One mode per source, as an operator would configure them.
SOURCE_AUTH: dict[str, SourceAuth] = {
    "generic": SourceAuth(mode="standard_webhooks",
                          secrets=[SecretStr(WHSEC_OLD), SecretStr(WHSEC_NEW)]),
    "splunk": SourceAuth(mode="url_token", secrets=[SecretStr("splunk-token-1"),
                                                    SecretStr("splunk-token-2")]),
    "elastic": SourceAuth(mode="bearer", secrets=[SecretStr("kibana-old"),
                                                  SecretStr("kibana-new")]),
    "sentinel": SourceAuth(mode="bearer", secrets=[SecretStr("logic-app-token")]),
    "crowdstrike": SourceAuth(mode="hmac", secrets=[SecretStr("falcon-hmac-key")],
                              timestamp_header="X-Timestamp"),
    "datadog": SourceAuth(mode="bearer", secrets=[SecretStr("dd-token")]),
    "guardduty": SourceAuth(mode="standard_webhooks", secrets=[SecretStr(WHSEC_NEW)]),
    "github": SourceAuth(mode="github", secrets=[SecretStr("gh-hook-secret"),
                                                 SecretStr("gh-hook-secret-2")]),
    "ocsf": SourceAuth(mode="hmac", secrets=[SecretStr("ocsf-key")]),
    "ssf": SourceAuth(mode="bearer", secrets=[SecretStr("ssf-decoded-token")]),
}


def make_settings(tmp_path: Path, **sources: SourceAuth) -> Settings:
    return Settings(state_dir=tmp_path, sources=sources or dict(SOURCE_AUTH))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def dead_letters(tmp_path: Path) -> DeadLetterStore:
    store = DeadLetterStore(tmp_path / "dead_letter.db")
    yield store  # type: ignore[misc]
    store.close()
