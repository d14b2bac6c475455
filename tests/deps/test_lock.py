"""The lock says what is installed, and agrees with what pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.lockcheck import LOCK, differences, locked

REPO = Path(__file__).resolve().parents[2]
EXTRAS = ("dev", "bench")


def _wanted() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in EXTRAS:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    build = (REPO / "requirements" / "build.in").read_text().splitlines()
    reqs += [Requirement(r) for r in build if r.strip() and not r.startswith("#")]
    return reqs


def _direct_in_lock() -> set[str]:
    """Names the lock pins because pyproject.toml or build.in asks for them (uv's `# via`)."""
    direct: set[str] = set()
    name = ""
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==", line)
        if m:
            name = canonicalize_name(m.group(1))
        elif re.search(r"#\s+(via\s+)?(stanch \(pyproject\.toml\)|-r requirements/build\.in)",
                       line):
            direct.add(name)
    return direct


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = locked()
    for req in _wanted():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not in {LOCK.name}: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside {req}: run make lock")


def test_lock_pins_nothing_pyproject_dropped() -> None:
    wanted = {canonicalize_name(r.name) for r in _wanted()}
    assert _direct_in_lock() == wanted, "pyproject.toml and the lock disagree: run make lock"


def test_every_pin_has_a_hash() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_venv_is_exactly_the_lock() -> None:
    missing, wrong, extra = differences()
    assert (missing, wrong, extra) == ({}, {}, {}), (
        "the venv differs from the lock (make install re-syncs it)")
