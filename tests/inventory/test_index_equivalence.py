"""The indexed inventory lookup answers exactly as the linear scan it replaced.

``YamlInventory.resolve`` used to scan every entry per mention; it now looks names up in
dict indexes built once. :class:`LinearInventory` keeps the old scan (verbatim, reusing the
shared helpers) as the reference, and hypothesis compares the two on small inventories
whose names come from a tiny pool, so case differences, duplicate names across entries and
providers, ``DOMAIN\\user`` with and without a domain, and case-sensitive name types all
collide often.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stanch.inventory import (
    _FIELDS,
    InventoryEntry,
    YamlInventory,
    _fold,
    _user_matches,
)
from stanch.models import IdentityContext, IdentityKind, IdentityMention, NameType


class LinearInventory(YamlInventory):
    """The pre-index resolution: every lookup scans every entry."""

    def resolve(self, mention: IdentityMention, source: str) -> IdentityContext | None:
        name = mention.name.strip()
        if not name:
            return None
        if mention.name_type is NameType.provider_id:
            return self._by_provider_id(name, mention)
        found = self._candidates(name, mention.name_type)
        if not found:
            fold = _fold(mention.name_type)
            found = [e for e in self._entries if fold(name) in map(fold, e.names())]
            found = found or [e for e in self._entries if e.key == name]
        chosen = self._narrow(found, mention, source)
        return chosen.context() if chosen else None

    def _candidates(self, name: str, name_type: NameType) -> list[InventoryEntry]:
        if name_type in (NameType.domain_user, NameType.username):
            return [e for e in self._entries if _user_matches(name, e)]
        fields = _FIELDS.get(name_type, ())
        fold = _fold(name_type)
        return [e for e in self._entries
                if any(fold(name) == fold(v) for f in fields for v in getattr(e, f))]


PROVIDERS = ["mock", "aws_iam", "entra"]
IDS = ["a", "b", "c", "alice", "Alice", "u1", "U1", "bot"]
# Deliberately tiny and full of near-misses: case variants, casefold-only equalities
# (ß/SS), domain\\user with, without and with an empty domain, padded names, names that
# look like keys, and case-sensitive key ids / ARNs that differ only by case.
POOL = [
    "alice", "Alice", "ALICE", "bob",
    "alice@x.com", "Alice@X.com", "ALICE@X.COM", "bob@x.com",
    "EXAMPLE\\alice", "example\\ALICE", "OTHER\\alice", "\\alice", "EXAMPLE\\bob",
    "AKIA1", "akia1", "AKIA2",
    "arn:aws:iam::1:user/a", "ARN:AWS:IAM::1:USER/A", "arn:aws:iam::1:user/b",
    "S-1-5-21-1", "s-1-5-21-1",
    "6f1c-obj", "6F1C-OBJ",
    "Straße", "STRASSE",
    " alice ", "ci-token", "CI-Token",
    "mock:alice", "aws_iam:a", "entra:u1",
]
MISSES = ["zed", "", "   ", "EXAMPLE\\zed", "mock:nobody", "a\\b\\alice"]

_names = st.lists(st.sampled_from(POOL), max_size=3)


@st.composite
def entries(draw: st.DrawFn) -> InventoryEntry:
    return InventoryEntry(
        provider=draw(st.sampled_from(PROVIDERS)),
        id=draw(st.sampled_from(IDS)),
        kind=draw(st.sampled_from(list(IdentityKind))),
        emails=draw(_names),
        usernames=draw(_names),
        object_ids=draw(_names),
        sids=draw(_names),
        access_key_ids=draw(_names),
        app_ids=draw(_names),
        arns=draw(_names),
        aliases=draw(_names),
    )


# Keys are unique, as `from_paths` guarantees; names may clash freely.
_inventories = st.lists(entries(), min_size=1, max_size=30, unique_by=lambda e: e.key)
_sources = st.none() | st.dictionaries(
    st.sampled_from(["guardduty", "generic"]),
    st.lists(st.sampled_from([*PROVIDERS, "gcp"]), max_size=2),
    max_size=2,
)


@st.composite
def mentions(draw: st.DrawFn, keys: list[str]) -> IdentityMention:
    name = draw(st.sampled_from(POOL) | st.sampled_from(MISSES) | st.sampled_from(keys))
    return IdentityMention(
        name=name,
        name_type=draw(st.sampled_from(list(NameType))),
        kind=draw(st.none() | st.sampled_from(list(IdentityKind))),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data(), items=_inventories, sources=_sources)
def test_indexed_resolve_matches_linear_scan(
    data: st.DataObject, items: list[InventoryEntry], sources: dict[str, list[str]] | None
) -> None:
    indexed = YamlInventory(items, sources)
    linear = LinearInventory(items, sources)
    keys = [e.key for e in items]
    for _ in range(20):
        mention = data.draw(mentions(keys), label="mention")
        source = data.draw(st.sampled_from(["guardduty", "generic", "manual"]), label="source")
        got = indexed.resolve(mention, source)
        want = linear.resolve(mention, source)
        assert (got.ref if got else None) == (want.ref if want else None)
        assert got == want


def test_large_inventory_resolves_to_the_right_entries() -> None:
    n = 20_000
    items = [
        InventoryEntry(
            provider="aws_iam" if i % 2 else "mock",
            id=f"id-{i}",
            kind=IdentityKind.user if i % 3 else IdentityKind.service_account,
            emails=[f"user{i}@example.com"],
            usernames=[f"CORP\\user{i}"],
            access_key_ids=[f"AKIA{i:016d}"],
        )
        for i in range(n)
    ]
    inv = YamlInventory(reversed(items))

    def key(name: str, name_type: NameType) -> str | None:
        found = inv.resolve(IdentityMention(name=name, name_type=name_type), "generic")
        return found.ref.key if found else None

    assert key("User12345@Example.COM", NameType.upn) == "aws_iam:id-12345"
    assert key("user777", NameType.username) == "aws_iam:id-777"
    assert key("corp\\USER19998", NameType.domain_user) == "mock:id-19998"
    assert key("OTHER\\user19998", NameType.domain_user) is None
    assert key(f"AKIA{4242:016d}", NameType.access_key_id) == "mock:id-4242"
    assert key(f"akia{4242:016d}", NameType.access_key_id) is None
    assert key("user20000@example.com", NameType.upn) is None
    found = inv.resolve(IdentityMention(name="user0@example.com", name_type=NameType.email),
                        "generic")
    assert found is not None
    assert found == inv.get("mock:id-0")
    assert found.ref.kind is IdentityKind.service_account


def test_duplicate_keys_are_refused_by_the_constructor_too() -> None:
    entry = InventoryEntry(provider="mock", id="a", kind="user", emails=["x@y"])
    with pytest.raises(ValueError, match="mock:a"):
        YamlInventory([entry, entry])
