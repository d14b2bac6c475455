"""Identity inventory: who owns an identity, what it is for, and every name sources use for it.

Planning conditions on it (environment, criticality, owner) and approvals and notifications
reach the owner through it. :class:`Inventory` is the small interface a CMDB or the IdP can
serve later; :class:`YamlInventory` reads ``inventory/*.yaml``:

.. code-block:: yaml

    sources:                    # optional: which providers a source's names belong to
      guardduty: [aws_iam]
    identities:
      - provider: mock
        id: sa-deploy
        kind: service_account
        owner: alice            # a principal id; `group:<team>` for a team
        custodian: group:platform-team
        environment: prod
        criticality: critical
        access_key_ids: [AKIAMOCKDEPLOY0001]

Resolution (:meth:`Inventory.resolve`) maps a name as a source sent it to one identity:
UPN/email case-insensitively, ``DOMAIN\\user`` by its user part (the domain must agree when
both sides name one), Entra object id, SID, access key id, app id, ARN, token alias, and
``provider:id`` directly. A name that fits several identities is resolved only when the
source's providers (``sources:``) or the mention's kind single one out; otherwise — like an
unknown name — the result is None and the caller reports and audits it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stanch.models import (
    IdentityContext,
    IdentityKind,
    IdentityMention,
    IdentityRef,
    Level,
    NameType,
)
from stanch.playbook.errors import LoadError, LocatedError
from stanch.playbook.yamlsrc import YamlDocument, read_yaml

if TYPE_CHECKING:
    from stanch.config import Settings


class InventoryError(LoadError):
    """One or more inventory files are invalid."""


@runtime_checkable
class Inventory(Protocol):
    """What Stanch needs from an inventory; a CMDB or the IdP can implement it."""

    def resolve(self, mention: IdentityMention, source: str) -> IdentityContext | None:
        """The identity a source's name refers to, or None when unknown or ambiguous."""
        ...

    def get(self, identity_key: str) -> IdentityContext | None:
        """The identity with key ``provider:id``."""
        ...

    def all(self) -> list[IdentityContext]:
        """Every identity, ordered by key."""
        ...


class InventoryEntry(BaseModel):
    """One identity as written in an inventory file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(description="Provider name as configured, e.g. `mock`, `aws_iam`.")
    id: str = Field(min_length=1, description="The provider's own id for the identity.")
    kind: IdentityKind = Field(description="user, service_account, oauth_app, token, …")
    display_name: str = Field(default="", description="Human-friendly name.")
    owner: str | None = Field(
        default=None,
        description="Accountable principal id (`alice`), or `group:<team>` for a team.",
    )
    custodian: str | None = Field(
        default=None, description="Who operates it day to day; same form as owner."
    )
    purpose: str = Field(default="", description="What the identity is for.")
    environment: str | None = Field(default=None, description="prod, staging, dev, …")
    criticality: Level | None = Field(default=None, description="info … critical.")
    emails: list[str] = Field(default_factory=list, description="UPNs and email addresses.")
    usernames: list[str] = Field(
        default_factory=list, description="Login names, `DOMAIN\\user` or bare `user`."
    )
    object_ids: list[str] = Field(default_factory=list, description="Entra (AAD) object ids.")
    sids: list[str] = Field(default_factory=list, description="Windows/AD security ids.")
    access_key_ids: list[str] = Field(default_factory=list, description="Cloud access key ids.")
    app_ids: list[str] = Field(default_factory=list, description="OAuth/app (client) ids.")
    arns: list[str] = Field(default_factory=list, description="AWS ARNs.")
    aliases: list[str] = Field(
        default_factory=list, description="Any other name, e.g. a token's label."
    )
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Free-form facts playbooks may test (team, tier…)."
    )
    last_rotated: datetime | None = Field(default=None, description="Last credential rotation.")
    expires: datetime | None = Field(default=None, description="When the identity expires.")

    @field_validator("provider")
    @classmethod
    def _no_colon(cls, v: str) -> str:
        if not v or ":" in v:
            raise ValueError(f"must be a provider name without ':' (got {v!r})")
        return v

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.id}"

    def names(self) -> list[str]:
        return [
            *self.emails, *self.usernames, *self.object_ids, *self.sids,
            *self.access_key_ids, *self.app_ids, *self.arns, *self.aliases,
        ]

    def context(self) -> IdentityContext:
        return IdentityContext(
            ref=IdentityRef(provider=self.provider, id=self.id, kind=self.kind),
            display_name=self.display_name,
            owner=self.owner,
            custodian=self.custodian,
            purpose=self.purpose,
            environment=self.environment,
            criticality=self.criticality,
            aliases=self.names(),
            attributes=dict(self.attributes),
            last_rotated=self.last_rotated,
            expires=self.expires,
        )


class InventoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: dict[str, list[str]] = Field(
        default_factory=dict, description="Alert source → providers its names belong to."
    )
    identities: list[InventoryEntry] = Field(default_factory=list)


# Which entry fields a name type is looked up in; comparisons ignore case except for keys
# and ARNs, whose case is significant.
_FIELDS: dict[NameType, tuple[str, ...]] = {
    NameType.upn: ("emails",),
    NameType.email: ("emails",),
    NameType.aad_object_id: ("object_ids",),
    NameType.sid: ("sids",),
    NameType.access_key_id: ("access_key_ids",),
    NameType.app_id: ("app_ids",),
    NameType.arn: ("arns",),
    NameType.token: ("aliases",),
    NameType.other: ("aliases",),
}
_CASE_SENSITIVE = frozenset({NameType.access_key_id, NameType.arn})


class YamlInventory:
    """An inventory read from YAML files; implements :class:`Inventory`."""

    def __init__(
        self, entries: Iterable[InventoryEntry], sources: dict[str, list[str]] | None = None
    ) -> None:
        self._entries = sorted(entries, key=lambda e: e.key)
        self._by_key = {e.key: e for e in self._entries}
        if len(self._by_key) != len(self._entries):
            counts = Counter(e.key for e in self._entries)
            dupes = sorted(k for k, n in counts.items() if n > 1)
            raise ValueError(f"duplicate identity keys in the inventory: {dupes}")
        self._sources = dict(sources or {})
        # Lookup indexes (a resolve per alert must not scan ten thousand entries): by
        # (field, value as compared), by user name (domain\\user splits on lookup), and by
        # any name folded to lower case for the loose fallback. Lists keep entry order.
        self._by_field: dict[tuple[str, str], list[InventoryEntry]] = {}
        self._by_user: dict[str, list[InventoryEntry]] = {}
        self._by_name: dict[str, list[InventoryEntry]] = {}
        fields = sorted({f for fs in _FIELDS.values() for f in fs})
        for e in self._entries:
            for f in fields:
                for v in getattr(e, f):
                    for key in {(f, v), (f, _ci(v))}:
                        _add(self._by_field, key, e)
            for u in e.usernames:
                _add(self._by_user, _split_user(u)[1], e)
            for n in e.names():
                _add(self._by_name, _ci(n), e)

    @classmethod
    def from_paths(cls, paths: Sequence[Path]) -> YamlInventory:
        """Read every ``*.yaml``/``*.yml`` under ``paths``; raise :class:`InventoryError`
        with located errors (file:line: field: message) when any is invalid."""
        entries: list[InventoryEntry] = []
        sources: dict[str, list[str]] = {}
        errors: list[LocatedError] = []
        first: dict[str, str] = {}
        for path in _files(paths, errors):
            doc, found = read_yaml(path)
            errors.extend(found)
            if doc is None or found:
                continue
            parsed = _parse(doc, errors)
            if parsed is None:
                continue
            for source, providers in parsed.sources.items():
                sources.setdefault(source, []).extend(providers)
            for i, entry in enumerate(parsed.identities):
                where = f"{doc.file}:{doc.line(('identities', i))}"
                if entry.key in first:
                    errors.append(doc.error(("identities", i, "id"),
                                            f"duplicate identity {entry.key} (also in "
                                            f"{first[entry.key]})"))
                    continue
                first[entry.key] = where
                entries.append(entry)
        errors.extend(_clashes(entries, first))
        if errors:
            raise InventoryError(errors)
        return cls(entries, sources)

    # -- Inventory ------------------------------------------------------------------------

    def get(self, identity_key: str) -> IdentityContext | None:
        entry = self._by_key.get(identity_key)
        return entry.context() if entry else None

    def all(self) -> list[IdentityContext]:
        return [e.context() for e in self._entries]

    def resolve(self, mention: IdentityMention, source: str) -> IdentityContext | None:
        name = mention.name.strip()
        if not name:
            return None
        if mention.name_type is NameType.provider_id:
            return self._by_provider_id(name, mention)
        found = self._candidates(name, mention.name_type)
        if not found:
            # A source that names things loosely: try every name we know, then the key.
            fold = _fold(mention.name_type)
            found = [e for e in self._by_name.get(_ci(name), [])
                     if fold(name) in map(fold, e.names())]
            if not found and name in self._by_key:
                found = [self._by_key[name]]
        chosen = self._narrow(found, mention, source)
        return chosen.context() if chosen else None

    # -- helpers --------------------------------------------------------------------------

    def _candidates(self, name: str, name_type: NameType) -> list[InventoryEntry]:
        if name_type in (NameType.domain_user, NameType.username):
            return [e for e in self._by_user.get(_split_user(name)[1], [])
                    if _user_matches(name, e)]
        fields = _FIELDS.get(name_type, ())
        fold = _fold(name_type)
        hits: dict[int, InventoryEntry] = {}
        for f in fields:
            for e in self._by_field.get((f, fold(name)), []):
                if any(fold(name) == fold(v) for v in getattr(e, f)):
                    hits[id(e)] = e
        return sorted(hits.values(), key=lambda e: e.key)

    def _narrow(
        self, found: list[InventoryEntry], mention: IdentityMention, source: str
    ) -> InventoryEntry | None:
        if len(found) > 1 and source in self._sources:
            providers = self._sources[source]
            found = [e for e in found if e.provider in providers] or found
        if len(found) > 1 and mention.kind is not None:
            found = [e for e in found if e.kind == mention.kind] or found
        return found[0] if len(found) == 1 else None

    def _by_provider_id(self, name: str, mention: IdentityMention) -> IdentityContext | None:
        entry = self._by_key.get(name)
        if entry is not None:
            return entry.context()
        provider, sep, ident = name.partition(":")
        if not sep or not provider or not ident or mention.kind is None:
            return None
        # Named exactly by provider and id but not inventoried: plan for it without the
        # inventory's facts (no owner, no environment); playbooks can test in_inventory.
        return IdentityContext(
            ref=IdentityRef(provider=provider, id=ident, kind=mention.kind), in_inventory=False
        )


_ALIAS_TYPES = (NameType.upn, NameType.access_key_id, NameType.arn, NameType.app_id,
                NameType.aad_object_id, NameType.sid, NameType.username, NameType.other)


def lookup(inventory: Inventory, text: str) -> IdentityContext | None:
    """The identity an on-call person means by ``text``: its key ``provider:id``, its
    inventory id (``app-reporting``, an ARN, a DN) when one provider has it, or any alias
    (UPN, username, access key id, ARN, object id, SID, app id, token alias)."""
    text = text.strip()
    found = inventory.get(text)
    if found is not None:
        return found
    by_id = [c for c in inventory.all() if c.ref.id == text]
    if len(by_id) == 1:
        return by_id[0]
    for name_type in _ALIAS_TYPES:
        found = inventory.resolve(IdentityMention(name=text, name_type=name_type), "manual")
        if found is not None and found.in_inventory:
            return found
    return None


def located_entries(paths: Sequence[Path]
                    ) -> tuple[list[tuple[InventoryEntry, str, int]], list[LocatedError]]:
    """Every entry with where it is written (``file:line``, index in ``identities``), and
    what did not load; for checks that point at the line to fix (``stanch doctor``)."""
    errors: list[LocatedError] = []
    out: list[tuple[InventoryEntry, str, int]] = []
    for path in _files(paths, errors):
        doc, found = read_yaml(path)
        errors.extend(found)
        if doc is None or found:
            continue
        parsed = _parse(doc, errors)
        for i, entry in enumerate(parsed.identities if parsed else []):
            out.append((entry, f"{doc.file}:{doc.line(('identities', i))}", i))
    return out, errors


def with_provider_type(identity: IdentityContext, settings: Settings) -> IdentityContext:
    """The identity with its provider's adapter type, so the plan fits what it can do."""
    conf = settings.providers.get(identity.ref.provider)
    if conf is None or identity.provider_type == conf.type:
        return identity
    return identity.model_copy(update={"provider_type": conf.type})


def load_inventory(settings: Settings) -> Inventory:
    """The configured inventory: YAML files under ``settings.inventory_paths``."""
    return YamlInventory.from_paths(settings.inventory_paths)


def _files(paths: Sequence[Path], errors: list[LocatedError]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            )
        elif path.is_file():
            files.append(path)
        else:
            errors.append(LocatedError(str(path), 1, "", "no such file or directory"))
    return files


def _parse(doc: YamlDocument, errors: list[LocatedError]) -> InventoryFile | None:
    if doc.data is None:
        return InventoryFile()
    if not isinstance(doc.data, dict):
        errors.append(doc.error((), "an inventory file is a mapping with `identities:`"))
        return None
    try:
        return InventoryFile.model_validate(doc.data)
    except ValidationError as err:
        errors.extend(doc.validation_errors(err, InventoryFile))
        return None


def _clashes(entries: list[InventoryEntry], where: dict[str, str]) -> list[LocatedError]:
    # The same name on two identities of one provider makes resolution a guess.
    errors: list[LocatedError] = []
    owner_of: dict[tuple[str, str], str] = {}
    for e in entries:
        for name in dict.fromkeys(_ci(n) for n in e.names()):
            other = owner_of.setdefault((e.provider, name), e.key)
            if other != e.key:
                file, _, line = where[e.key].rpartition(":")
                errors.append(LocatedError(file, int(line), "",
                                           f"{e.key}: name {name!r} also belongs to {other}"))
    return errors


def _ci(value: str) -> str:
    return value.casefold()


def _same(value: str) -> str:
    return value


def _add(index: dict[Any, list[InventoryEntry]], key: Any, entry: InventoryEntry) -> None:
    bucket = index.setdefault(key, [])
    if not bucket or bucket[-1] is not entry:
        bucket.append(entry)


def _fold(name_type: NameType) -> Callable[[str], str]:
    return _same if name_type in _CASE_SENSITIVE else _ci


def _user_matches(name: str, entry: InventoryEntry) -> bool:
    domain, user = _split_user(name)
    for candidate in entry.usernames:
        cdomain, cuser = _split_user(candidate)
        if cuser == user and (not domain or not cdomain or domain == cdomain):
            return True
    return False


def _split_user(name: str) -> tuple[str, str]:
    domain, sep, user = name.rpartition("\\")
    return (_ci(domain), _ci(user)) if sep else ("", _ci(name))
