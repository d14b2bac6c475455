"""docs/providers.md stays true: every example loads, every setting is documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from stanch.config import load_settings
from stanch.provider_config import CREDENTIALS, OPTIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
BLOCKS = [b for b in re.findall(r"```toml\n(.*?)```", DOC, re.S)
          if "type = " in b and "NAME" not in b]


def test_there_is_an_example_per_type() -> None:
    types = {tomllib.loads(b)["providers"][n]["type"] for b in BLOCKS
             for n in tomllib.loads(b)["providers"]}
    assert types == set(OPTIONS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: re.findall(r'type = "(\w+)"', b)[0])
def test_each_example_loads(block: str, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "absent.toml"))
    settings = load_settings(**tomllib.loads(block))
    [name] = [n for n in settings.providers if n != "mock"] or ["mock"]
    kind = settings.providers[name].type
    section = DOC.split(f'type = "{kind}"', 1)[1].split("\n## ", 1)[0]
    documented = block + section
    for field in (*OPTIONS[kind].model_fields, *CREDENTIALS[kind].model_fields):
        assert field in documented, f"{kind}: {field} is not in its example"
