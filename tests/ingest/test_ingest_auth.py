"""Every auth mode accepts a good delivery and refuses bad signatures, old timestamps, replays."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from stanch.config import SourceAuth
from stanch.ingest import AuthError, ReplayCache, authenticate
from stanch.ingest.signing import sign

from .conftest import NOW, WHSEC_NEW, WHSEC_OLD, make_settings

BODY = b'{"id":"a-1","title":"t"}'


def _auth(settings, source, req, body=BODY, now=NOW, cache=None):
    return authenticate(source, headers=req.headers, query=req.query, body=body,
                        settings=settings, now=now, replay_cache=cache or ReplayCache())


@pytest.mark.parametrize("source", ["generic", "splunk", "elastic", "sentinel", "crowdstrike",
                                    "datadog", "guardduty", "github", "ocsf"])
def test_each_configured_source_accepts_a_signed_body_and_refuses_a_tampered_one(
    settings, source
):
    conf = settings.sources[source]
    secret = conf.secrets[-1].get_secret_value()
    req = sign(conf.mode, BODY, secret=secret, now=NOW, signature_header=conf.signature_header,
               timestamp_header=conf.timestamp_header)
    key = _auth(settings, source, req)
    assert key.startswith(conf.mode + ":")
    if conf.mode in ("bearer", "url_token"):
        return  # the token does not cover the body
    with pytest.raises(AuthError) as err:
        _auth(settings, source, req, body=BODY + b" ")
    assert err.value.status == 401
    assert err.value.code == "bad_signature"


def test_standard_webhooks_interoperates_with_the_reference_library(settings):
    # Signed by the `standardwebhooks` package itself, with the old (rotating-out) secret.
    wh = Webhook(WHSEC_OLD)
    sig = wh.sign("msg_2b7f", NOW, BODY.decode())
    headers = {"webhook-id": "msg_2b7f", "webhook-timestamp": str(int(NOW.timestamp())),
               "webhook-signature": f"v1,bogus== {sig}"}
    key = authenticate("generic", headers=headers, query={}, body=BODY, settings=settings,
                       now=NOW, replay_cache=ReplayCache())
    assert key == "standard_webhooks:0"


def test_standard_webhooks_refuses_expired_and_future_timestamps(settings):
    for skew in (timedelta(seconds=301), timedelta(seconds=-301)):
        req = sign("standard_webhooks", BODY, secret=WHSEC_NEW, now=NOW - skew)
        with pytest.raises(AuthError) as err:
            _auth(settings, "generic", req)
        assert err.value.code == "expired"
    ok = sign("standard_webhooks", BODY, secret=WHSEC_NEW, now=NOW - timedelta(seconds=299))
    assert _auth(settings, "generic", ok)


def test_standard_webhooks_refuses_a_replayed_id_but_not_after_a_bad_signature(settings):
    cache = ReplayCache()
    req = sign("standard_webhooks", BODY, secret=WHSEC_NEW, now=NOW, msg_id="msg_1")
    forged = sign("standard_webhooks", BODY, secret="whsec_" + base64.b64encode(b"x" * 24).decode(),
                  now=NOW, msg_id="msg_1")
    with pytest.raises(AuthError):
        _auth(settings, "generic", forged, cache=cache)  # must not burn msg_1
    assert _auth(settings, "generic", req, cache=cache)
    with pytest.raises(AuthError) as err:
        _auth(settings, "generic", req, cache=cache)
    assert err.value.code == "replay"
    # Same id on another source is a different delivery.
    assert _auth(settings, "guardduty", req, cache=cache)


def test_standard_webhooks_missing_headers(settings):
    with pytest.raises(AuthError, match="webhook-id, webhook-timestamp, webhook-signature"):
        authenticate("generic", headers={}, query={}, body=BODY, settings=settings, now=NOW)


def test_github_signature_is_hmac_of_body_and_rotation_works(settings):
    for i, secret in enumerate(["gh-hook-secret", "gh-hook-secret-2"]):
        digest = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
        hdr = {"X-Hub-Signature-256": f"sha256={digest}"}
        assert authenticate("github", headers=hdr, query={}, body=BODY, settings=settings,
                            now=NOW) == f"github:{i}"
    for bad in ("sha256=00", "sha1=" + "0" * 40, "sha256=" + "0" * 64, ""):
        with pytest.raises(AuthError):
            authenticate("github", headers={"X-Hub-Signature-256": bad}, query={}, body=BODY,
                         settings=settings, now=NOW)


def test_bearer_rotation_and_refusal(settings):
    for i, tok in enumerate(["kibana-old", "kibana-new"]):
        assert authenticate("elastic", headers={"authorization": f"Bearer {tok}"}, query={},
                            body=BODY, settings=settings, now=NOW) == f"bearer:{i}"
    basic = base64.b64encode(b"kibana:kibana-new").decode()
    assert authenticate("elastic", headers={"Authorization": f"Basic {basic}"}, query={},
                        body=BODY, settings=settings, now=NOW) == "bearer:1"
    for hdr in ({}, {"Authorization": "Bearer kibana-ol"}, {"Authorization": "Bearer "},
                {"Authorization": "Basic !!!"}, {"Authorization": "kibana-new"}):
        with pytest.raises(AuthError):
            authenticate("elastic", headers=hdr, query={}, body=BODY, settings=settings, now=NOW)


def test_url_token(settings):
    assert authenticate("splunk", headers={}, query={"token": "splunk-token-2"}, body=BODY,
                        settings=settings, now=NOW) == "url_token:1"
    for q in ({}, {"token": ""}, {"token": "splunk-token-3"}):
        with pytest.raises(AuthError):
            authenticate("splunk", headers={}, query=q, body=BODY, settings=settings, now=NOW)


def test_hmac_with_timestamp_refuses_expired_and_missing_timestamp(settings):
    old = sign("hmac", BODY, secret="falcon-hmac-key", now=NOW - timedelta(minutes=6),
               timestamp_header="X-Timestamp")
    with pytest.raises(AuthError) as err:
        _auth(settings, "crowdstrike", old)
    assert err.value.code == "expired"
    no_ts = sign("hmac", BODY, secret="falcon-hmac-key", now=NOW)  # body-only signature
    with pytest.raises(AuthError, match="missing X-Timestamp"):
        _auth(settings, "crowdstrike", no_ts)
    # A fresh timestamp does not rescue a signature made over another timestamp.
    good = sign("hmac", BODY, secret="falcon-hmac-key", now=NOW, timestamp_header="X-Timestamp")
    good.headers["X-Timestamp"] = str(int(NOW.timestamp()) + 1)
    with pytest.raises(AuthError) as err:
        _auth(settings, "crowdstrike", good)
    assert err.value.code == "bad_signature"


def test_hmac_without_timestamp_header(settings):
    hexsig = hmac.new(b"ocsf-key", BODY, hashlib.sha256).hexdigest()
    assert authenticate("ocsf", headers={"x-signature": hexsig}, query={}, body=BODY,
                        settings=settings, now=NOW) == "hmac:0"
    with pytest.raises(AuthError):
        authenticate("ocsf", headers={"x-signature": "zz"}, query={}, body=BODY,
                     settings=settings, now=NOW)


def test_unconfigured_source_is_refused_with_how_to_configure(tmp_path: Path):
    settings = make_settings(tmp_path, generic=SourceAuth(mode="open"))
    with pytest.raises(AuthError) as err:
        authenticate("splunk", headers={}, query={}, body=BODY, settings=settings, now=NOW)
    assert "[sources.splunk]" in err.value.reason
    assert "STANCH_SOURCES__SPLUNK__MODE" in err.value.reason
    with pytest.raises(AuthError, match="not a webhook"):
        authenticate("manual", headers={}, query={}, body=BODY, settings=settings, now=NOW)
    assert authenticate("generic", headers={}, query={}, body=BODY, settings=settings,
                        now=NOW) == "open"


def test_mode_without_secrets_is_refused(tmp_path: Path):
    settings = make_settings(tmp_path, elastic=SourceAuth(mode="bearer"))
    with pytest.raises(AuthError, match="no secrets configured"):
        authenticate("elastic", headers={"Authorization": "Bearer x"}, query={}, body=BODY,
                     settings=settings, now=NOW)


def test_reasons_never_contain_the_secret(settings):
    secrets = [s.get_secret_value() for c in settings.sources.values() for s in c.secrets]
    for source in settings.sources:
        with pytest.raises(AuthError) as err:
            authenticate(source, headers={"Authorization": "Bearer nope"}, query={"token": "x"},
                         body=BODY, settings=settings, now=NOW)
        assert not any(s in err.value.reason for s in secrets)


def test_replay_cache_is_bounded_and_expires():
    cache = ReplayCache(max_entries=3)
    for i in range(10):
        assert cache.check_and_remember(f"k{i}", now=NOW, ttl_seconds=60)
    assert len(cache) <= 3
    assert not cache.check_and_remember("k9", now=NOW, ttl_seconds=60)
    assert cache.check_and_remember("k9", now=NOW + timedelta(seconds=61), ttl_seconds=60)


def test_whsec_secret_in_settings_is_not_printed(settings):
    assert WHSEC_NEW not in repr(settings.sources["generic"])
    assert isinstance(settings.sources["generic"].secrets[0], SecretStr)
