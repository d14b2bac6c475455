"""Runs CLI invocations for tests in a process of its own: import once, invoke many times.

Each stdin line is ``{"args": [...], "env": {...}}``; each stdout line answers with
``{"code": int, "stdout": str, "stderr": str}``. The CLI runs through typer exactly as the
``stanch`` script does; only the interpreter start-up is shared. A separate process keeps the
test's own threads (worker, API server, their logs) out of the captured output.
"""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from stanch.cli import app


def main() -> None:
    runner = CliRunner()
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        result = runner.invoke(app, request["args"], env=request["env"])
        out.write(json.dumps({"code": result.exit_code, "stdout": result.stdout,
                              "stderr": result.stderr}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
