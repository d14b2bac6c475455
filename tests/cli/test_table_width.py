"""A table printed to a pipe or a file is not cut to rich's default 80 columns."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from rich.table import Table
from stanch.cli._client import table_console
t = Table()
for name in ("workflow id", "identity", "state", "level", "updated", "playbook"):
    t.add_column(name, no_wrap=True)
t.add_row("containment-" + "a" * 24, "mock:u-alice@example.com", "awaiting_approval",
          "reduce_scope", "2026-12-07T18:00:00+00:00", "privilege-escalation")
table_console().print(t)
"""


def _run(env_extra: dict[str, str]) -> str:
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **env_extra}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout


def test_piped_tables_keep_every_value_whole() -> None:
    out = _run({})
    assert "awaiting_approval" in out and "privilege-escalation" in out
    assert max(len(line) for line in out.splitlines()) > 80


def test_columns_still_decides_when_set() -> None:
    out = _run({"COLUMNS": "60"})
    assert max(len(line) for line in out.splitlines()) <= 60
