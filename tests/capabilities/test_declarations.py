"""The declarations are complete and consistent, and docs/providers.md shows them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stanch.capabilities import (
    DECLARATIONS,
    LOSSES,
    declaration,
    possible_losses,
    reversibility_table,
)
from stanch.models import CONTAINMENT_ACTIONS, Action, IdentityKind

ROOT = Path(__file__).resolve().parents[2]


def _doc_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("providers_doc",
                                                  ROOT / "scripts" / "providers_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_table_matches_the_declarations() -> None:
    doc = _doc_script()
    text = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    assert doc.render(text) == text, "docs/providers.md is stale: python scripts/providers_doc.py"
    assert reversibility_table() in text


def test_every_adapter_declares_every_action_with_known_losses() -> None:
    for adapter, table in DECLARATIONS.items():
        assert set(table) == set(CONTAINMENT_ACTIONS), adapter
        for action, d in table.items():
            if not d.supported:
                assert d.reason, (adapter, action)
                continue
            assert d.changes, (adapter, action)
            assert set(d.all_losses()) <= set(LOSSES), (adapter, action)
            # an action with no undo at all must say what it loses
            assert d.undo_restores or d.loses, (adapter, action)


def test_param_losses_and_possible_losses() -> None:
    okta = declaration("okta", Action.force_reauth)
    assert okta.losses({}) == ("sessions",)
    assert okta.losses({"grants": True}) == ("sessions", "oauth_grants")
    assert possible_losses(Action.revoke, [IdentityKind.user]) == {
        "failed_login_history": ["ldap"]}
    assert "aws_iam" not in possible_losses(Action.rotate)["old_secret"]
