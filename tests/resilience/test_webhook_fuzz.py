"""Fuzz ``POST /v1/alerts/{source}`` over a real socket: whatever arrives, never a 5xx.

Cases mix signed and unsigned deliveries, real fixtures mutated field by field, arbitrary
JSON (text with unpaired surrogates and NUL included) and raw bytes, for every source (and
a few that do not exist). Valid alerts reach the real stack's Temporal, so dispatch is
exercised too. schemathesis (tests/contract) covers the rest of the API from its OpenAPI
document but holds no source secrets: signed deliveries of real payloads are what this
generator adds.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.resilience.stack import SOURCE_AUTH, Stack, report, signed, sized

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(sized(240, 1800))]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
SAMPLES = {src: [json.loads(p.read_text()) for p in sorted((FIXTURES / src).glob("*.json"))
                 if not p.name.endswith(".expected.json")]
           for src in SOURCE_AUTH}
SOURCES = sorted(SOURCE_AUTH)

# Text as JSON can carry it: unpaired surrogates (`"\\ud800"`) and NUL included.
any_text = st.text(st.characters(categories=["Cs", "Cc", "L", "N", "P", "Zs"]), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, source: str) -> Any:
    doc = json.loads(json.dumps(draw(st.sampled_from(SAMPLES[source] or [{}]))))
    for _ in range(draw(st.integers(0, 4))):
        node: Any = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict)
                                       else list(range(len(node)))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return doc


# Hostile values a sender can put anywhere: numbers no float holds, strings near the body
# limit, nesting far past what a recursive walker survives.
HUGE = st.sampled_from([10**400, -(10**400), 10**4000, 2**64, -(2**63) - 1])
hostile_values = (HUGE | st.floats(allow_nan=False) | st.text(min_size=10_000, max_size=60_000)
                  | st.sampled_from(["\u0000", "\ud800", "%0A", "../" * 50]))


def _nest(depth: int, leaf: Any, as_list: bool) -> str:
    inner = json.dumps(leaf)
    return ("[" * depth + inner + "]" * depth) if as_list else (
        '{"a":' * depth + inner + "}" * depth)


@st.composite
def hostile(draw: st.DrawFn, source: str) -> bytes:
    """A fixture with one field replaced by a hostile value, or wrapped in deep nesting."""
    if draw(st.integers(0, 3)) == 0:
        depth = draw(st.sampled_from([65, 500, 990, 5000, 50_000]))
        return _nest(depth, draw(mutated(source)), draw(st.booleans())).encode()
    doc = json.loads(json.dumps(draw(st.sampled_from(SAMPLES[source] or [{}]))))
    node: Any = doc
    while isinstance(node, dict | list) and node:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict)
                                   else list(range(len(node)))))
        if not isinstance(node[key], dict | list) or draw(st.integers(0, 2)) == 0:
            node[key] = draw(hostile_values)
            break
        node = node[key]
    return json.dumps(doc).encode()


@st.composite
def delivery(draw: st.DrawFn) -> tuple[str, bytes, str]:
    source = draw(st.sampled_from([*SOURCES, "nope", "GENERIC", "a" * 300]))
    known = source in SOURCE_AUTH
    kind = draw(st.sampled_from(["fixture", "hostile", "json", "bytes"] if known
                                else ["json", "bytes"]))
    if kind == "fixture":
        body = json.dumps(draw(mutated(source))).encode()
    elif kind == "hostile":
        body = draw(hostile(source))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = draw(st.binary(max_size=300))
    auth = draw(st.sampled_from(["signed", "signed", "none", "wrong"]))
    return source, body, auth


def test_alert_webhook_never_answers_5xx(stack: Stack) -> None:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    t0 = time.monotonic()
    with httpx.Client(base_url=stack.api, timeout=30) as http:

        @settings(max_examples=sized(1000, 10_000), deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))
        @given(delivery())
        def case(d: tuple[str, bytes, str]) -> None:
            source, body, auth = d
            headers: dict[str, str] = {"Content-Type": "application/json"}
            query: dict[str, str] = {}
            if auth == "signed" and source in SOURCE_AUTH:
                headers, query = signed(source, body)
            elif auth == "wrong":
                headers["Authorization"] = "Bearer not-a-token"
                headers["X-Hub-Signature-256"] = "sha256=00"
            r = http.post(f"/v1/alerts/{source}", content=body, headers=headers, params=query)
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                failures.append(f"{source} {auth} {body[:200]!r} → {r.status_code} {r.text}")
            assert r.status_code < 500, failures[-1]

        case()
    report("webhook fuzz", cases=sum(statuses.values()),
           statuses=dict(sorted(statuses.items())), server_errors=len(failures),
           seconds=round(time.monotonic() - t0))
    assert not failures
