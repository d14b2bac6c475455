"""What every normalizer shares: naming identities, levels, keyword categories, the Alert."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from stanch.models import Alert, Category, IdentityKind, IdentityMention, Level, NameType
from stanch.redact import redact, redact_text

MAX_MENTIONS = 50
_MAX_NAME = 512

_AWS_KEY = re.compile(r"^(AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,20}$")
_SID = re.compile(r"^S-1-\d+(-\d+)+$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_aws_access_key_id(s: str) -> bool:
    return bool(_AWS_KEY.match(s)) and s[:4] in ("AKIA", "ASIA")


def guess_name_type(name: str) -> NameType:
    """What sort of name ``name`` looks like, when the source does not say."""
    if is_aws_access_key_id(name):
        return NameType.access_key_id
    if name.startswith("arn:"):
        return NameType.arn
    if "\\" in name:
        return NameType.domain_user
    if "@" in name:
        return NameType.email
    if _SID.match(name):
        return NameType.sid
    if _GUID.match(name):
        return NameType.aad_object_id
    return NameType.username


def guess_id_type(name: str) -> NameType:
    """Like :func:`guess_name_type` for an opaque id field: a plain word is ``other``."""
    nt = guess_name_type(name)
    return NameType.other if nt is NameType.username else nt


class Mentions:
    """An ordered, de-duplicated, bounded list of identity mentions."""

    def __init__(self) -> None:
        self._items: list[IdentityMention] = []
        self._seen: set[tuple[str, NameType]] = set()

    def add(
        self,
        name: Any,
        name_type: NameType | None = None,
        kind: IdentityKind | None = None,
        role: str | None = None,
        *,
        is_id: bool = False,
    ) -> None:
        """Add one mention; ``name_type`` None means guess (``is_id``: an opaque id field)."""
        if isinstance(name, bool) or not isinstance(name, str | int):
            return
        n = str(name).strip()
        if not n or len(n) > _MAX_NAME or n in ("-", "N/A", "n/a", "unknown", "null"):
            return
        nt = name_type or (guess_id_type(n) if is_id else guess_name_type(n))
        if nt is NameType.access_key_id and kind is None:
            kind = IdentityKind.access_key
        key = (n.lower(), nt)
        if key in self._seen or len(self._items) >= MAX_MENTIONS:
            return
        self._seen.add(key)
        self._items.append(IdentityMention(name=n, name_type=nt, kind=kind, role=role))

    def as_list(self) -> list[IdentityMention]:
        return list(self._items)


_LEVEL_WORDS = {
    "info": Level.info, "informational": Level.info, "information": Level.info,
    "unknown": Level.info, "none": Level.info,
    "low": Level.low, "minor": Level.low,
    "medium": Level.medium, "moderate": Level.medium, "med": Level.medium,
    "high": Level.high, "major": Level.high, "severe": Level.high,
    "critical": Level.critical, "crit": Level.critical, "fatal": Level.critical,
}


def level_word(value: Any) -> Level | None:
    """A level from a vendor's word (``High``, ``informational``…); None if not a known word."""
    if isinstance(value, str):
        return _LEVEL_WORDS.get(value.strip().lower())
    return None


# Rule names and titles → category. Ordered: the first match wins, so the specific
# (a leaked key seen in use) comes before the general (an unusual API call).
KEYWORD_CATEGORIES: list[tuple[re.Pattern[str], Category]] = [
    (re.compile(r"leak|expos|exfiltrat|secret.?scan|credential.?(dump|theft|stolen|compromis)"
                r"|stolen.?(key|token|credential)|compromised.{0,30}(key|credential|token)", re.I),
     Category.leaked_secret),
    (re.compile(r"privilege.?escalat|priv.?esc|admin.?(role|group|right|privilege)"
                r"|(added|add).{0,20}(admin|privileged|owner)|role.?assign|elevat", re.I),
     Category.privilege_escalation),
    (re.compile(r"oauth|consent|app.?(grant|permission|registration)|service.?principal.?cred"
                r"|illicit", re.I),
     Category.oauth_app_abuse),
    (re.compile(r"dormant|inactive|stale|orphan|unused.?(account|identity|key)", re.I),
     Category.dormant_identity_active),
    (re.compile(r"malware|ransomware|trojan|backdoor|crypto.?(currency|min)|miner|virus"
                r"|implant|beacon|\bc2\b|command.?and.?control", re.I),
     Category.malware_on_host),
    (re.compile(r"sign.?in|log.?in|log.?on|(impossible|atypical|improbable).?(travel|access)"
                r"|geographically|\bmfa\b"
                r"|multi.?factor|brute|password.?spray|unfamiliar|authenticat|session.?hijack"
                r"|credential.?stuff|account.?takeover", re.I),
     Category.risky_sign_in),
    (re.compile(r"\bapi\b|enumerat|discovery|anomal|unusual|\btor\b|malicious.?ip|recon"
                r"|cloudtrail|access.?key.?(use|usage)", re.I),
     Category.anomalous_api_use),
]


def category_from_text(*texts: Any) -> Category:
    """Category from rule names / titles / types by keyword; ``other`` if nothing matches."""
    joined = " ".join(t for t in texts if isinstance(t, str))
    if not joined:
        return Category.other
    for pattern, cat in KEYWORD_CATEGORIES:
        if pattern.search(joined):
            return cat
    return Category.other


# MITRE ATT&CK tactics → category, for sources that tag alerts with tactics.
TACTIC_CATEGORIES: dict[str, Category] = {
    "credentialaccess": Category.leaked_secret,
    "privilegeescalation": Category.privilege_escalation,
    "initialaccess": Category.risky_sign_in,
    "persistence": Category.anomalous_api_use,
    "discovery": Category.anomalous_api_use,
    "defenseevasion": Category.anomalous_api_use,
    "lateralmovement": Category.anomalous_api_use,
    "collection": Category.anomalous_api_use,
    "exfiltration": Category.anomalous_api_use,
    "execution": Category.malware_on_host,
    "commandandcontrol": Category.malware_on_host,
    "impact": Category.malware_on_host,
}


def category_from_tactics(tactics: Any) -> Category:
    for t in tactics if isinstance(tactics, list) else [tactics]:
        if isinstance(t, str):
            cat = TACTIC_CATEGORIES.get(re.sub(r"[^a-z]", "", t.lower()))
            if cat:
                return cat
    return Category.other


def build_alert(
    source: str,
    *,
    source_alert_id: str,
    dedup_key: str,
    received_at: datetime,
    raw: Any,
    title: str = "",
    description: str = "",
    category: Category = Category.other,
    severity: Level = Level.medium,
    confidence: Level = Level.medium,
    mentions: Mentions | None = None,
    observed_at: datetime | None = None,
    secrets: list[str] | None = None,
) -> Alert:
    """The Alert, with its id derived from the dedup key and secrets masked from the raw copy.

    ``secrets`` are literal values to mask wherever they appear (e.g. GitHub's leaked secret).
    """
    kept = redact(raw, extra=secrets)
    return Alert(
        id=Alert.make_id(source, dedup_key),
        source=source,
        source_alert_id=source_alert_id[:_MAX_NAME],
        dedup_key=dedup_key,
        title=redact_text(title[:500], secrets),
        description=redact_text(description[:4000], secrets),
        category=category,
        severity=severity,
        confidence=confidence,
        mentions=mentions.as_list() if mentions else [],
        observed_at=observed_at,
        received_at=received_at,
        raw=kept if isinstance(kept, dict) else {"payload": kept},
    )
