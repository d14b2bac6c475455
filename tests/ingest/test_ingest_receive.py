"""receive(): the status of every refusal, dead letters, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from stanch.config import SourceAuth
from stanch.ingest import (
    AuthError,
    DeadLetterStore,
    InvalidPayload,
    NormalizeError,
    PayloadTooLarge,
    ReplayCache,
    UnknownSource,
    receive,
)
from stanch.ingest.signing import sign

from .conftest import NOW, make_settings


@pytest.fixture
def open_settings(tmp_path: Path):
    return make_settings(tmp_path, generic=SourceAuth(mode="open"),
                         elastic=SourceAuth(mode="open"))


async def _recv(settings, body: bytes, dead_letters=None, source="generic", headers=None):
    return await receive(source, headers=headers or {}, query={}, body=body, settings=settings,
                         now=NOW, dead_letters=dead_letters, replay_cache=ReplayCache())


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_good_delivery_yields_alerts_and_counts(open_settings):
    before = _count("stanch_alerts_received_total", source="generic")
    alerts = await _recv(open_settings, json.dumps({"id": "x-1", "title": "t"}).encode())
    assert [a.source_alert_id for a in alerts] == ["x-1"]
    assert _count("stanch_alerts_received_total", source="generic") == before + 1


async def test_too_large_is_413_before_anything_else(tmp_path):
    settings = make_settings(tmp_path, generic=SourceAuth(mode="open"))
    settings.api.max_body_bytes = 1024
    with pytest.raises(PayloadTooLarge) as err:
        await _recv(settings, b"{" + b" " * 2000 + b"}", source="nope")
    assert err.value.status == 413


async def test_unknown_source_is_404_and_counted_as_unknown(open_settings):
    before = _count("stanch_alerts_refused_total", source="unknown", reason="unknown_source")
    with pytest.raises(UnknownSource) as err:
        await _recv(open_settings, b"{}", source="zz-made-up")
    assert err.value.status == 404
    assert _count("stanch_alerts_refused_total", source="unknown",
                  reason="unknown_source") == before + 1


async def test_bad_auth_is_401_and_never_dead_lettered(tmp_path, dead_letters):
    settings = make_settings(tmp_path, generic=SourceAuth(mode="bearer", secrets=["s3cret-x"]))
    with pytest.raises(AuthError) as err:
        await _recv(settings, b"not json", dead_letters, headers={"Authorization": "Bearer no"})
    assert err.value.status == 401
    assert dead_letters.list(10) == []


async def test_unparseable_and_unnormalizable_are_422_and_dead_lettered(open_settings,
                                                                       dead_letters):
    with pytest.raises(InvalidPayload) as err:
        await _recv(open_settings, b"{nope", dead_letters)
    assert err.value.status == 422
    body = json.dumps({"title": "no id", "password": "hunter2-hunter2"}).encode()
    with pytest.raises(NormalizeError) as nerr:
        await _recv(open_settings, body, dead_letters)
    assert nerr.value.status == 422
    assert str(nerr.value) == "id: missing"
    letters = dead_letters.list(10)
    assert [d.reason for d in letters] == ["id: missing", letters[1].reason]
    assert letters[1].reason.startswith("body is not JSON")
    kept = dead_letters.get(letters[0].id)
    assert kept is not None and b"hunter2" not in kept.body and b"no id" in kept.body


async def test_elastic_path_in_reason(open_settings):
    payload = {"context": {"alerts": [{"kibana.alert.uuid": "u-1"}, {"kibana": {"alert": {}}}]}}
    with pytest.raises(NormalizeError) as err:
        await _recv(open_settings, json.dumps(payload).encode(), source="elastic")
    assert err.value.where == "context.alerts[1].kibana.alert.uuid"
    assert err.value.what == "missing"


async def test_deep_nesting_is_422(open_settings):
    body = b"[" * 500 + b"]" * 500
    with pytest.raises(InvalidPayload, match="nested deeper"):
        await _recv(open_settings, body)


async def test_broken_dead_letter_store_answers_503_so_the_sender_retries(open_settings,
                                                                         tmp_path):
    store = DeadLetterStore(tmp_path / "dl.db")
    store.close()
    with pytest.raises(Exception) as err:
        await _recv(open_settings, b"{}", store)
    assert getattr(err.value, "status", None) == 503


async def test_signed_delivery_end_to_end(settings):
    body = json.dumps({"id": "sw-1"}).encode()
    req = sign("standard_webhooks", body, secret=settings.sources["generic"].secrets[0]
               .get_secret_value(), now=NOW)
    alerts = await receive("generic", headers=req.headers, query=req.query, body=body,
                           settings=settings, now=NOW, dead_letters=None,
                           replay_cache=ReplayCache())
    assert alerts[0].source_alert_id == "sw-1"
