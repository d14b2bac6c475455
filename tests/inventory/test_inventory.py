"""Inventory: every name a source uses resolves to one identity, or to None."""

from __future__ import annotations

from pathlib import Path

import pytest

from stanch.config import Settings
from stanch.inventory import Inventory, InventoryError, YamlInventory, load_inventory
from stanch.models import IdentityKind, IdentityMention, Level, NameType

DEMO = Path("inventory")
BUILD_BOT = "aws_iam:arn:aws:iam::123456789012:user/build-bot"


@pytest.fixture(scope="module")
def inv() -> YamlInventory:
    return YamlInventory.from_paths([DEMO, Path("examples/inventory")])


@pytest.mark.parametrize(
    ("name", "name_type", "key"),
    [
        ("alice@example.com", NameType.upn, "mock:u-alice"),
        ("Alice@Example.COM", NameType.email, "mock:u-alice"),
        ("EXAMPLE\\alice", NameType.domain_user, "mock:u-alice"),
        ("example\\ALICE", NameType.domain_user, "mock:u-alice"),
        ("alice", NameType.username, "mock:u-alice"),
        ("6F1C2B9E-0D3A-4C55-9A1E-2B7F3C4D5E60", NameType.aad_object_id, "mock:u-alice"),
        ("EXAMPLE\\bob", NameType.domain_user, "mock:u-bob"),
        ("AKIAMOCKDEPLOY0001", NameType.access_key_id, "mock:sa-deploy"),
        ("3f9a6c1e-reporting", NameType.app_id, "mock:app-reporting"),
        ("ci-token", NameType.token, "mock:tok-ci"),
        ("mock:tok-ci", NameType.provider_id, "mock:tok-ci"),
        ("AKIAIOSFODNN7EXAMPLE", NameType.access_key_id, BUILD_BOT),
        ("arn:aws:iam::123456789012:user/build-bot", NameType.arn, BUILD_BOT),
        ("ci-token", NameType.other, "mock:tok-ci"),
    ],
)
def test_resolves(inv: YamlInventory, name: str, name_type: NameType, key: str) -> None:
    found = inv.resolve(IdentityMention(name=name, name_type=name_type), "generic")
    assert found is not None and found.ref.key == key


@pytest.mark.parametrize(
    ("name", "name_type"),
    [
        ("carol@example.com", NameType.upn),
        ("OTHER\\alice", NameType.domain_user),  # the domain disagrees
        ("akiamockdeploy0001", NameType.access_key_id),  # key ids are case-sensitive
        ("mock:u-carol", NameType.provider_id),  # not inventoried, kind unknown
        ("", NameType.upn),
    ],
)
def test_unresolved_is_none(inv: YamlInventory, name: str, name_type: NameType) -> None:
    assert inv.resolve(IdentityMention(name=name, name_type=name_type), "generic") is None


def test_demo_facts(inv: YamlInventory) -> None:
    assert isinstance(inv, Inventory)
    sa = inv.get("mock:sa-deploy")
    assert sa is not None
    assert (sa.ref.kind, sa.owner, sa.custodian, sa.environment, sa.criticality) == (
        IdentityKind.service_account, "alice", "group:platform-team", "prod", Level.critical
    )
    assert sa.purpose == "deploys production services from CI"
    assert "AKIAMOCKDEPLOY0001" in sa.aliases
    assert sa.last_rotated is not None
    keys = [c.ref.key for c in inv.all()]
    assert keys == sorted(keys)
    assert {"mock:u-alice", "mock:u-bob", "mock:sa-deploy", "mock:app-reporting",
            "mock:tok-ci"} <= set(keys)


def test_provider_id_outside_inventory_with_kind(inv: YamlInventory) -> None:
    m = IdentityMention(name="mock:u-carol", name_type=NameType.provider_id,
                        kind=IdentityKind.user)
    found = inv.resolve(m, "manual")
    assert found is not None and found.in_inventory is False and found.owner is None


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_same_name_on_two_providers_needs_the_source(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", """\
sources:
  okta: [okta]
identities:
  - {provider: okta, id: "00u1", kind: user, emails: [dana@example.com]}
  - {provider: entra, id: "d-1", kind: user, emails: [dana@example.com]}
""")
    inv = YamlInventory.from_paths([tmp_path])
    m = IdentityMention(name="dana@example.com", name_type=NameType.upn)
    assert inv.resolve(m, "splunk") is None  # ambiguous: refuse to guess
    found = inv.resolve(m, "okta")
    assert found is not None and found.ref.key == "okta:00u1"


def test_kind_breaks_a_tie(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", """\
identities:
  - {provider: vault, id: svc, kind: service_account, usernames: [etl]}
  - {provider: ldap, id: etl-human, kind: user, usernames: [etl]}
""")
    inv = YamlInventory.from_paths([tmp_path])
    m = IdentityMention(name="etl", name_type=NameType.username,
                        kind=IdentityKind.service_account)
    found = inv.resolve(m, "generic")
    assert found is not None and found.ref.key == "vault:svc"


def test_located_errors(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", """\
identities:
  - provider: mock
    id: x
    kind: robot
  - provider: mock
    id: y
    kind: user
    owner: someone
    colour: blue
""")
    _write(tmp_path, "b.yaml", """\
identities:
  - {provider: mock, id: z, kind: user, emails: [z@example.com]}
  - {provider: mock, id: z, kind: user}
  - {provider: mock, id: w, kind: user, emails: [Z@example.com]}
""")
    with pytest.raises(InventoryError) as info:
        YamlInventory.from_paths([tmp_path])
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path}/a.yaml:4: identities[0].kind: must be one of 'user', 'service_account', "
        "'access_key', 'service_principal', 'oauth_app' or 'token' (got 'robot')",
        f"{tmp_path}/a.yaml:9: identities[1].colour: unknown field",
        f"{tmp_path}/b.yaml:3: identities[1].id: duplicate identity mock:z "
        f"(also in {tmp_path}/b.yaml:2)",
        f"{tmp_path}/b.yaml:4: mock:w: name 'z@example.com' also belongs to mock:z",
    ]


def test_load_inventory_from_settings(tmp_path: Path) -> None:
    settings = Settings(inventory_paths=[DEMO, tmp_path / "missing"])
    with pytest.raises(InventoryError, match="missing:1: no such file or directory"):
        load_inventory(settings)
    inv = load_inventory(Settings(inventory_paths=[DEMO]))
    assert inv.get("mock:u-bob") is not None
