"""The worker gives the sandbox's per-run imports a bytecode cache when Python writes none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A child process: the cache switch changes process-wide state (sys.pycache_prefix).
_CHILD = """
import sys
from stanch.config import Settings
from stanch.worker import cache_workflow_bytecode
cache_workflow_bytecode(Settings(state_dir=sys.argv[1]))
sys.modules.pop("workflows.containment", None)  # import it afresh, as the sandbox does
import workflows.containment  # noqa: E402,F401  compiled into the cache
print(sys.dont_write_bytecode, sys.pycache_prefix)
"""


def test_dont_write_bytecode_gets_a_cache_under_the_state_dir(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-B", "-c", _CHILD, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    out = proc.stdout.strip().splitlines()[-1].split()  # after the worker's log line
    assert "worker.bytecode_cache" in proc.stdout + proc.stderr
    assert out == ["False", str((tmp_path / "pycache").resolve())]
    cached = list((tmp_path / "pycache").rglob("containment*.pyc"))
    assert cached, "workflows/containment.py was not compiled into the cache"
