"""The venv against the lock: what differs, and optionally removes what the lock does not list.

    python scripts/lockcheck.py [--prune]     (exit 1 when the venv differs from the lock)

Used by `make install` (with --prune, after installing the lock) and by the suite's lock test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "lock.txt"
# Not in the lock on purpose: the installer itself, and the project (installed editable).
UNLOCKED = {"pip", "stanch"}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path = LOCK) -> dict[str, str]:
    """name → version for every pin of the lock whose marker holds on this interpreter."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        m = _PIN.match(line)
        if not m:
            continue
        name, version, marker = m.group(1), m.group(2), (m.group(3) or "").strip()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonical(name)] = version
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def differences(lock: Path = LOCK) -> tuple[dict[str, str], dict[str, tuple[str, str]],
                                             dict[str, str]]:
    """(missing from the venv, wrong version: (locked, installed), extra in the venv)."""
    want, have = locked(lock), installed()
    missing = {n: v for n, v in want.items() if n not in have}
    wrong = {n: (v, have[n]) for n, v in want.items() if n in have and have[n] != v}
    extra = {n: v for n, v in have.items() if n not in want and n not in UNLOCKED}
    return missing, wrong, extra


def main(argv: list[str]) -> int:
    missing, wrong, extra = differences()
    if "--prune" in argv and extra:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *extra],
                       check=True)
        missing, wrong, extra = differences()
    for n, v in sorted(missing.items()):
        print(f"lockcheck: {n}=={v} is locked but not installed")
    for n, (v, got) in sorted(wrong.items()):
        print(f"lockcheck: {n} is {got}, the lock says {v}")
    for n, v in sorted(extra.items()):
        print(f"lockcheck: {n}=={v} is installed but not in the lock")
    return 1 if missing or wrong or extra else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
