"""`stanch contain NAME`: the inventory id, any alias, or `provider:id` (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stanch.inventory import YamlInventory, lookup

BUILD_BOT = "aws_iam:arn:aws:iam::123456789012:user/build-bot"


@pytest.fixture(scope="module")
def inv() -> YamlInventory:
    return YamlInventory.from_paths([Path("inventory"), Path("examples/inventory")])


@pytest.mark.parametrize(("text", "key"), [
    ("mock:app-reporting", "mock:app-reporting"),
    ("app-reporting", "mock:app-reporting"),           # the inventory's own id
    (" u-alice ", "mock:u-alice"),
    ("alice@example.com", "mock:u-alice"),
    ("EXAMPLE\\bob", "mock:u-bob"),
    ("3f9a6c1e-reporting", "mock:app-reporting"),      # app id
    ("AKIAMOCKDEPLOY0001", "mock:sa-deploy"),
    ("S-1-5-21-3623811015-3361044348-30300820-1107", "mock:u-bob"),
    ("ci-token", "mock:tok-ci"),
    ("arn:aws:iam::123456789012:user/build-bot", BUILD_BOT),  # an id that has colons
    (BUILD_BOT, BUILD_BOT),
    ("AKIAI44QH8DHBEXAMPLE", "aws_iam:arn:aws:iam::123456789012:user/legacy-etl"),
])
def test_lookup(inv: YamlInventory, text: str, key: str) -> None:
    found = lookup(inv, text)
    assert found is not None and found.ref.key == key


@pytest.mark.parametrize("text", ["nobody", "mock:nobody", "", "arn:aws:iam::1:user/x"])
def test_unknown(inv: YamlInventory, text: str) -> None:
    assert lookup(inv, text) is None
