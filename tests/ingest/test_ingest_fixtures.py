"""Each tests/fixtures/alerts/<source>/NAME.json normalizes to NAME.expected.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stanch.ingest import SOURCES, normalize
from stanch.models import Alert

from .conftest import FIXTURES, NOW

CASES = sorted(p for p in FIXTURES.glob("*/*.json") if not p.name.endswith(".expected.json"))
_FIELDS = ("source_alert_id", "dedup_key", "category", "severity", "confidence", "title",
           "observed_at")


def _expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.stem + ".expected.json").read_text())


def _view(alert: Alert, want: dict[str, Any]) -> dict[str, Any]:
    got = alert.model_dump(mode="json")
    out = {k: got[k] for k in _FIELDS if k in want}
    out["mentions"] = [
        {k: m[k] for k in ("name", "name_type", "kind", "role") if k in w}
        for m, w in zip(got["mentions"], want.get("mentions", []), strict=False)
    ]
    if len(got["mentions"]) != len(want.get("mentions", [])):
        out["mentions"] = got["mentions"]
    return out


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_normalizes_to_expected(path: Path):
    source = path.parent.name
    alerts = normalize(source, json.loads(path.read_text()), NOW)
    expected = _expected(path)["alerts"]
    assert len(alerts) == len(expected)
    for alert, want in zip(alerts, expected, strict=True):
        assert alert.source == source
        assert alert.id == Alert.make_id(source, want["dedup_key"])
        assert _view(alert, want) == {**{k: v for k, v in want.items() if k != "mentions"},
                                      "mentions": want.get("mentions", [])}


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_same_payload_twice_gives_same_alert_ids(path: Path):
    payload = json.loads(path.read_text())
    a = [x.id for x in normalize(path.parent.name, payload, NOW)]
    b = [x.id for x in normalize(path.parent.name, json.loads(path.read_text()), NOW)]
    assert a == b


def test_every_source_has_at_least_two_fixtures():
    for source in SOURCES:
        n = len([p for p in CASES if p.parent.name == source])
        assert n >= 2, f"{source}: {n} fixtures"
