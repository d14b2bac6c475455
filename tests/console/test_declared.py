"""The declared-reversibility and step-status fragments, rendered with the console's own
templates: losses with their descriptions, the gate's reason, and step statuses the
console has no special case for (``skipped`` and ``refused`` from the planner, with their
note)."""

from __future__ import annotations

from types import SimpleNamespace

from stanch.capabilities import LOSSES
from stanch.console.render import templates
from workflows.containment_types import StepStatus, StepView

MACROS = templates.env.get_template("_declared.html").module


def _text(html: object) -> str:
    return " ".join(str(html).split())


def test_a_step_that_loses_says_what_and_why_it_waits() -> None:
    step = StepView(step_id="p:1:force_reauth", action="force_reauth", playbook="p",
                    alert_ids=[], status=StepStatus.awaiting_approval,
                    changes=["revokes every session"], loses=["sessions", "old_secret"],
                    loss_gate="force_reauth on mock loses sessions (not in accept_loss)")
    html = _text(MACROS.declared(step))  # type: ignore[attr-defined]
    assert "revokes every session" in html
    assert "Cannot restore" in html
    for loss in ("sessions", "old_secret"):
        assert _text(LOSSES[loss].replace("'", "&#39;")) in html
    assert "nothing</strong>: what it changes stays changed" in html
    assert "Waits because" in html and "not in accept_loss" in html


def test_a_reversible_step_says_what_rollback_restores_and_no_loss() -> None:
    step = StepView(step_id="p:0:reduce_scope", action="reduce_scope", playbook="p",
                    alert_ids=[], status=StepStatus.applied,
                    changes=["removes privileged group memberships"],
                    undo_restores=["the memberships"])
    html = _text(MACROS.declared(step))  # type: ignore[attr-defined]
    assert "Rollback restores" in html and "the memberships" in html
    assert "Cannot restore" not in html and "Waits because" not in html


def test_an_unknown_loss_id_is_named_not_hidden() -> None:
    step = SimpleNamespace(changes=[], undo_restores=[], irreversible=False,
                           loses=["tea_leaves"], loss_gate="")
    html = _text(MACROS.declared(step))  # type: ignore[attr-defined]
    assert "tea_leaves" in html and "not described in stanch/capabilities.py" in html


def test_skipped_refused_and_unknown_statuses_render_with_their_note() -> None:
    for value in ("skipped", "refused", "some_future_status"):
        step = SimpleNamespace(status=value, note=f"the provider cannot ({value})")
        html = _text(MACROS.status(step))  # type: ignore[attr-defined]
        assert f'class="status s-{value}"' in html
        assert value.replace("_", " ") in html
        assert f"the provider cannot ({value})" in html
    known = SimpleNamespace(status=StepStatus.awaiting_approval)
    html = _text(MACROS.status(known))  # type: ignore[attr-defined]
    assert "awaiting approval" in html and "note" not in html
