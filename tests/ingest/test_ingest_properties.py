"""Property tests: whatever arrives, `receive` answers with a 4xx IngestError or alerts.

Three kinds of input per source: arbitrary bytes, arbitrary JSON, and the source's own
fixtures with random subtrees replaced by arbitrary JSON (which reaches deep code paths).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stanch.config import Settings, SourceAuth
from stanch.ingest import SOURCES, DeadLetterStore, IngestError, NormalizeError, normalize, receive
from stanch.ingest.auth import ReplayCache
from stanch.ingest.signing import sign
from stanch.models import Alert

from .conftest import FIXTURES, NOW, SOURCE_AUTH

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
JSON = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                              max_size=5),
    max_leaves=25,
)
_FIXTURE_DOCS = {
    s: [json.loads(p.read_text()) for p in sorted((FIXTURES / s).glob("*.json"))
        if not p.name.endswith(".expected.json")]
    for s in SOURCES
}
_PROFILE = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = _replace(doc[head], rest, value)
    return copy


@st.composite
def mutated_fixture(draw: st.DrawFn, source: str) -> Any:
    doc = draw(st.sampled_from(_FIXTURE_DOCS[source]))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        doc = _replace(doc, path, draw(JSON))
    return doc


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("props")
    store = DeadLetterStore(tmp / "dead_letter.db")
    open_settings = Settings(state_dir=tmp, sources={s: SourceAuth(mode="open") for s in SOURCES})
    signed_settings = Settings(state_dir=tmp, sources=dict(SOURCE_AUTH))
    yield open_settings, signed_settings, store
    store.close()


def _receive(settings: Settings, source: str, body: bytes, store: DeadLetterStore,
             headers: dict[str, str] | None = None, query: dict[str, str] | None = None
             ) -> list[Alert] | IngestError:
    try:
        return asyncio.run(receive(source, headers=headers or {}, query=query or {}, body=body,
                                   settings=settings, now=NOW, dead_letters=store,
                                   replay_cache=ReplayCache()))
    except IngestError as err:
        assert 400 <= err.status < 500, err
        assert err.reason
        return err


def _check_alerts(result: list[Alert] | IngestError, source: str) -> None:
    if isinstance(result, list):
        for a in result:
            assert a.source == source
            assert a.id == Alert.make_id(source, a.dedup_key)
            json.dumps(a.model_dump(mode="json"))  # storable as JSON


@pytest.mark.parametrize("source", sorted(SOURCES))
@_PROFILE
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes(env, source: str, body: bytes):
    open_settings, _, store = env
    _check_alerts(_receive(open_settings, source, body, store), source)


@pytest.mark.parametrize("source", sorted(SOURCES))
@_PROFILE
@given(doc=JSON)
def test_arbitrary_json(env, source: str, doc: Any):
    open_settings, _, store = env
    body = json.dumps(doc).encode()
    _check_alerts(_receive(open_settings, source, body, store), source)


@pytest.mark.parametrize("source", sorted(SOURCES))
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixtures_normalize_or_raise_normalize_error(source: str, data: st.DataObject):
    doc = data.draw(mutated_fixture(source))
    try:
        alerts = normalize(source, doc, NOW)
    except NormalizeError as err:
        assert err.status == 422 and err.where
        return
    _check_alerts(alerts, source)


@pytest.mark.parametrize("source", sorted(SOURCES))
@_PROFILE
@given(data=st.data(), headers=st.dictionaries(
    st.sampled_from(["authorization", "webhook-id", "webhook-timestamp", "webhook-signature",
                     "x-hub-signature-256", "x-signature", "x-timestamp", "Authorization"]),
    st.text(max_size=60), max_size=4),
    query=st.dictionaries(st.sampled_from(["token", "t"]), st.text(max_size=20), max_size=2))
def test_signed_sources_refuse_garbage_credentials_with_401(env, source: str, data, headers,
                                                           query):
    _, signed_settings, store = env
    doc = data.draw(st.sampled_from(_FIXTURE_DOCS[source]))
    result = _receive(signed_settings, source, json.dumps(doc).encode(), store, headers, query)
    assert isinstance(result, IngestError) and result.status == 401


@pytest.mark.parametrize("source", sorted(SOURCES))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_signed_mutated_fixtures_reach_normalize(env, source: str, data):
    _, signed_settings, store = env
    conf = signed_settings.sources[source]
    body = json.dumps(data.draw(mutated_fixture(source))).encode()
    req = sign(conf.mode, body, secret=conf.secrets[0].get_secret_value(), now=NOW,
               signature_header=conf.signature_header, timestamp_header=conf.timestamp_header)
    result = _receive(signed_settings, source, body, store, req.headers, req.query)
    assert not (isinstance(result, IngestError) and result.status == 401), result
    _check_alerts(result, source)
