"""docker-compose.yml validates against the Compose specification schema, and every
Stanch service runs a real `stanch` command. (Docker cannot run on these machines.)"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.main import get_command

from stanch.cli import app

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "specs" / "compose-spec.json"


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_spec() -> None:
    if not SCHEMA.exists():
        pytest.skip(f"compose schema not present at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(_compose(), schema)


def test_compose_has_the_production_topology() -> None:
    services = _compose()["services"]
    for name in ("postgres", "temporal-schema", "temporal", "temporal-ui", "stanch-api",
                 "stanch-worker", "mock-idp"):
        assert name in services, name
    assert (REPO / "Dockerfile").exists()


def test_every_stanch_service_command_is_a_real_command() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, svc in _compose()["services"].items():
        if svc.get("build") is None:
            continue
        cmd = svc["command"]
        assert isinstance(cmd, list) and cmd, name
        assert cmd[0] in commands, f"{name}: `stanch {cmd[0]}` is not a stanch command"


def test_the_dockerfile_entrypoint_is_the_stanch_cli() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["stanch"]' in text
    assert "pip install" in text


def test_temporal_frontend_requires_client_certificates_and_is_not_published() -> None:
    """Whoever reaches the frontend can send any update: mTLS, and no port on the host."""
    services = _compose()["services"]
    temporal = services["temporal"]
    assert "ports" not in temporal
    assert temporal["environment"]["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    for name in ("stanch-api", "stanch-worker"):
        env = services[name]["environment"]
        for key in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_SERVER_NAME"):
            assert env[f"STANCH_TEMPORAL__{key}"], (name, key)
        assert services[name]["volumes"], name
    assert services["temporal-ui"]["environment"]["TEMPORAL_TLS_CERT"]
