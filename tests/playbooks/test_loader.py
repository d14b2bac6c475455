"""Broken playbooks: each yields exactly one error naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from stanch.playbook import PlaybookError, lint, load_playbooks
from stanch.playbook.schema import parse_duration

BROKEN = Path("tests/playbooks/broken")

# file → the one error it must produce, exactly as `stanch playbook lint` prints it.
EXPECTED = {
    "unknown-field.yaml":
        "12: ladder[0].approval.qourum: unknown field (did you mean 'quorum'?)",
    "bad-quorum.yaml": "14: ladder[2].approval.quorum: must be ≥ 1 (got 0)",
    "bad-deny-quorum.yaml": "12: ladder[0].approval.deny_quorum: must be ≥ 1 (got 0)",
    "bad-duration.yaml":
        "12: ladder[1].revert_after: must be a duration like 30m, 4h or 2d (got '4 hours')",
    "irreversible-without-approval.yaml":
        "12: ladder[1].irreversible: irreversible step needs approval "
        "(or break_glass: true with a break_glass_reason)",
    "break-glass-without-reason.yaml":
        "13: ladder[1].break_glass: break_glass needs a break_glass_reason",
    "bad-action.yaml":
        "9: ladder[0].action: must be one of 'notify', 'reduce_scope', 'force_reauth', "
        "'rotate' or 'revoke' (got 'disable')",
    "bad-severity.yaml":
        "5: match.min_severity: must be one of 'info', 'low', 'medium', 'high' or 'critical' "
        "(got 'severe')",
    "wrong-type.yaml": "3: priority: must be an integer (got 'high')",
    "yaml-syntax.yaml":
        "10: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(check the indentation)",
    "revert-after-irreversible.yaml":
        "12: ladder[0].revert_after: an irreversible step cannot be reverted",
    "bad-params.yaml":
        "13: ladder[1].params.target: must be one of 'identity' or 'credential' "
        "(got 'everything') for revoke",
    "missing-match.yaml": "2: match: required field missing",
    "duplicate-key.yaml": "10: ladder[0].action: duplicate key",
    "waive-irreversible.yaml":
        "14: ladder[0].approval.waive_when: irreversible steps always need a human",
    "escalation-after-deadline.yaml":
        "15: ladder[0].approval.escalation[1].after: starts at 45m, not before the 30m "
        "deadline: it would never run",
    "owner-only-no-fallback.yaml":
        "11: ladder[0].approval.groups: only `owner` can approve: set the playbook's "
        "owner_fallback for identities without an owner",
    "bad-condition.yaml": "13: ladder[0].when.any[1].crit: unknown field",
    "claims-reversible.yaml":
        "10: ladder[0].description: says reversible, but revoke loses failed_login_history "
        "on ldap: describe what rollback cannot restore",
    "loss-without-approval.yaml":
        "10: ladder[0].accept_loss: force_reauth loses leases on vault; sessions on aws_iam, "
        "entra, mock, okta, vault: add an approval (needed there), or accept_loss: "
        "[leases, sessions]",
    "unknown-loss.yaml":
        "11: ladder[0].accept_loss[0]: reduce_scope never loses sessions on any provider: "
        "remove it",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_playbook_has_one_located_error(name: str) -> None:
    errors = lint([BROKEN / name])
    assert [str(e) for e in errors] == [f"{BROKEN / name}:{EXPECTED[name]}"]


def test_every_broken_file_is_covered() -> None:
    assert {p.name for p in BROKEN.glob("*.yaml")} == set(EXPECTED)


def test_duplicate_name_across_files() -> None:
    errors = lint([BROKEN / "dup"])
    assert [str(e) for e in errors] == [
        f"{BROKEN}/dup/b-second.yaml:3: name: duplicate playbook name 'same-name' "
        f"(also in {BROKEN}/dup/a-first.yaml:2)"
    ]


def test_load_raises_with_every_error_in_file_order() -> None:
    with pytest.raises(PlaybookError) as info:
        load_playbooks([BROKEN])
    errors = info.value.errors
    assert len(errors) == len(EXPECTED)
    assert [e.file for e in errors] == sorted(e.file for e in errors)
    quorum = next(e for e in errors if e.file.endswith("bad-quorum.yaml"))
    assert (quorum.line, quorum.path) == (14, "ladder[2].approval.quorum")
    assert "bad-quorum.yaml:14: ladder[2].approval.quorum: must be ≥ 1 (got 0)" in str(info.value)


def test_missing_path_and_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    errors = lint([tmp_path / "nope.yaml", empty])
    assert [str(e) for e in errors] == [
        f"{tmp_path}/nope.yaml:1: no such file or directory",
        f"{empty}:1: a playbook is a mapping with name, match, rules and ladder "
        "(got an empty file)",
    ]


def test_directories_are_not_recursive(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "case.expected.yaml").write_text("expect: {playbook: x}\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    assert load_playbooks([tmp_path]) == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("4h", 14400), ("2d", 172800), ("1h30m", 5400),
                          ("1w", 604800), ("45s", 45)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["4", "4 hours", "PT4H", "0m", "", "h", 30])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(bad)
