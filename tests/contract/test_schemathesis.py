"""schemathesis against the real API on a real socket, as an outside tester would run it.

Every check (`--checks all`), every phase (examples, coverage, fuzzing, stateful: the
document's links chain a created containment or elevation into the operations on it), a
fixed seed, bounded examples; once with an operator token and once with none. The sources'
credentials are not given: signed webhook deliveries are what tests/resilience's own
generator adds (real fixtures, mutated, signed for every source).

``make fuzz`` runs the same with thousands of cases per operation
(``STANCH_FUZZ_EXAMPLES``); docs/operations.md has a run's figures.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import OPERATOR_TOKEN, ContractStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

EXAMPLES = int(os.environ.get("STANCH_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("STANCH_FUZZ_SEED", "22"))
ST = Path(sys.executable).with_name("st")
HOOKS_DIR = Path(__file__).parent  # st_hooks.py: serializers for media types st lacks


def _config(tmp: Path, authenticated: bool) -> Path:
    path = tmp / "schemathesis.toml"
    path.write_text(f'[auth.openapi.operatorToken]\nbearer = "{OPERATOR_TOKEN}"\n'
                    if authenticated else "")
    return path


async def run_schemathesis(url: str, tmp: Path, *, authenticated: bool,
                           examples: int = EXAMPLES, seed: int = SEED) -> tuple[int, str]:
    """Run ``st run`` in a subprocess (the event loop stays free for the worker)."""
    argv = [str(ST), "--config-file", str(_config(tmp, authenticated)), "run",
            f"{url}/openapi.json", "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--seed", str(seed), "--max-examples", str(examples), "--workers", "1",
            "--generation-database", "none", "--no-color", "--request-timeout", "60",
            "--report", "junit", "--report-dir", str(tmp / "report")]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "st_hooks", "COLUMNS": "200",
             "PYTHONPATH": os.pathsep.join([str(HOOKS_DIR), os.environ.get("PYTHONPATH", "")])})
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    text = out.decode(errors="replace")
    (tmp / "schemathesis.out").write_text(text)
    return proc.returncode, text


def summary(output: str) -> str:
    """The run's phases and its closing summary (cases, failures, time)."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    phases = [ln for ln in lines if re.search(r"(Examples|Coverage|Fuzzing|Stateful) \(in|"
                                               r"passed|API Links|Scenarios", ln)]
    start = next((i for i, ln in enumerate(lines) if "SUMMARY" in ln), len(lines))
    return "\n".join([*phases, *lines[start:]])


@pytest.mark.parametrize("authenticated", [True, False], ids=["operator", "anonymous"])
async def test_schemathesis_finds_nothing(contract_stack: ContractStack, tmp_path: Path,
                                          authenticated: bool) -> None:
    code, output = await run_schemathesis(contract_stack.url, tmp_path,
                                          authenticated=authenticated)
    print(f"\nschemathesis ({'operator token' if authenticated else 'anonymous'}, "
          f"{EXAMPLES} examples, seed {SEED}):\n{summary(output)}")
    assert code == 0, output[-20000:]
