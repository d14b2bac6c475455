"""``stanch token create``: the plain token once, and a config entry that accepts it."""

from __future__ import annotations

import json
import tomllib

from typer.testing import CliRunner

from stanch.api.auth import Authenticator, hash_token
from stanch.cli import app
from stanch.config import ApiToken
from stanch.models import Role


async def test_create_prints_the_token_once_and_an_entry_that_accepts_it() -> None:
    result = CliRunner().invoke(app, ["token", "create", "dana", "--role", "approver",
                                      "--group", "soc-approvers", "--group", "soc-leads"])
    assert result.exit_code == 0, result.output
    lines = [ln.strip() for ln in result.stdout.splitlines()]
    tokens = [ln for ln in lines if ln.startswith("stanch_")]
    assert len(tokens) == 1
    token = tokens[0]
    toml_text = result.stdout[result.stdout.index("[[api_tokens]]"):]
    assert token not in toml_text
    entry = tomllib.loads(toml_text)["api_tokens"][0]
    assert entry == {"sha256": hash_token(token), "principal": "dana",
                     "groups": ["soc-approvers", "soc-leads"], "roles": ["approver"],
                     "identity_keys": []}

    principal = await Authenticator(api_tokens=[ApiToken(**entry)]).authenticate(
        f"Bearer {token}")
    assert principal.id == "dana" and principal.roles == [Role.approver]
    assert principal.groups == ["soc-approvers", "soc-leads"]


def test_json_output_and_unknown_role() -> None:
    result = CliRunner().invoke(app, ["token", "create", "ci-bot", "--role", "viewer",
                                      "--identity-key", "mock:sa-deploy", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["entry"]["sha256"] == hash_token(data["token"])
    assert data["entry"]["identity_keys"] == ["mock:sa-deploy"]

    result = CliRunner().invoke(app, ["token", "create", "x", "--role", "root"])
    assert result.exit_code == 2
    assert "root" in result.stderr
