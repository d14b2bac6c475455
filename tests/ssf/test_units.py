"""SET validation, subjects, keys, emission and simulate, without servers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from stanch.cli import app
from stanch.ingest import normalize
from stanch.inventory import YamlInventory
from stanch.models import AuditRecord, AuditType
from stanch.ssf import events
from stanch.ssf.keys import KeyStore
from stanch.ssf.set import SetError, make_claims, sign, validate
from stanch.ssf.store import SsfStore
from stanch.ssf.transmitter import StreamError, Transmitter

REPO = Path(__file__).resolve().parents[2]
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISS, AUD = "https://idp.example", "https://stanch.example"


async def _key(kid: str | None, alg: str) -> jwt.PyJWK:
    if kid != "k1":
        raise SetError("invalid_key", "unknown")
    return jwt.PyJWK.from_dict({**jwt.algorithms.RSAAlgorithm.to_jwk(
        KEY.public_key(), as_dict=True), "kid": "k1"})


def _token(sub_id: dict[str, Any], **extra: Any) -> str:
    claims = make_claims(iss=ISS, aud=[AUD, "other"], event_type=events.SESSION_REVOKED,
                         event={}, sub_id=sub_id)
    claims.update(extra)
    return sign(claims, KEY, "k1")


async def _check(token: str) -> dict[str, Any]:
    return await validate(token, key=_key, issuer=ISS, audience=AUD, now=time.time(),
                          max_age=600, skew=60)


async def test_subject_formats() -> None:
    ok = [{"format": "email", "email": "a@x"},
          {"format": "iss_sub", "iss": ISS, "sub": "00u1"},
          {"format": "opaque", "id": "x"},
          {"format": "complex", "user": {"format": "email", "email": "a@x"},
           "session": {"format": "opaque", "id": "s"}},
          {"format": "aliases", "identifiers": [{"format": "email", "email": "a@x"}]}]
    for sub in ok:
        assert (await _check(_token(sub)))["sub_id"] == sub
    bad = [{"format": "email"}, {"format": "iss_sub", "sub": "x"}, {"format": "complex"},
           {"format": "weird", "id": "x"}, "alice@example.com",
           {"format": "complex", "user": {"format": "email"}}]
    for sub in bad:
        with pytest.raises(SetError) as e:
            await _check(_token(sub))  # type: ignore[arg-type]
        assert e.value.err == "invalid_request"


async def test_header_checks() -> None:
    claims = make_claims(iss=ISS, aud=AUD, event_type=events.SESSION_REVOKED, event={},
                         sub_id={"format": "opaque", "id": "x"})
    plain_jwt = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(SetError, match="typ"):
        await _check(plain_jwt)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"typ": "secevent+jwt"})
    with pytest.raises(SetError, match="alg"):
        await _check(unsigned)
    with pytest.raises(SetError) as e:
        await _check("not a jws")
    assert e.value.err == "invalid_request"


def test_normalizer_subjects_and_meaning() -> None:
    now = datetime.now(UTC)

    def one(sub: dict[str, Any], event_type: str = events.CREDENTIAL_COMPROMISE,
            event: dict[str, Any] | None = None) -> Any:
        payload = {"iss": ISS, "jti": "j", "iat": 1, "sub_id": sub,
                   "events": {event_type: event or {}}}
        (alert,) = normalize("ssf", payload, now)
        return alert

    assert one({"format": "account", "uri": "acct:bob@example.com"}).mentions[0].name == \
        "bob@example.com"
    aliases = one({"format": "aliases", "identifiers": [
        {"format": "email", "email": "a@x"}, {"format": "opaque", "id": "u-1"}]})
    assert [m.name for m in aliases.mentions] == ["a@x", "u-1"]
    up = one({"format": "opaque", "id": "x"}, events.ASSURANCE_LEVEL_CHANGE,
             {"change_direction": "increase"})
    down = one({"format": "opaque", "id": "x"}, events.ASSURANCE_LEVEL_CHANGE,
               {"change_direction": "decrease"})
    assert up.category.value == "other" and down.category.value == "risky_sign_in"
    assert one({"format": "opaque", "id": "x"}, events.CREDENTIAL_CHANGE_REQUIRED
               ).severity.value == "high"


def test_key_rotation_keeps_the_old_key_for_a_while(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys", retain_seconds=3600)
    first = keys.signing_key().kid
    assert (tmp_path / "keys" / f"{first}.pem").stat().st_mode & 0o077 == 0
    second = keys.rotate()
    assert keys.signing_key().kid == second
    assert {k["kid"] for k in keys.jwks()["keys"]} == {first, second}
    short = KeyStore(tmp_path / "keys", retain_seconds=0)
    assert {k["kid"] for k in short.jwks()["keys"]} == {second}
    assert all(k["n"] and "d" not in k for k in keys.jwks()["keys"])


def _record(seq: int, type_: AuditType, action: str, status: str) -> AuditRecord:
    return AuditRecord(seq=seq, prev_hash="0" * 64, hash="1" * 64, type=type_,
                       at=datetime.now(UTC), actor="stanch", subject="mock:u-alice",
                       workflow_id="containment-abc", action_id=f"a{seq}", phase="result",
                       dedup_key=f"a{seq}:result",
                       data={"result": {"action": action, "status": status, "after": {},
                                        "before": {"groups": ["admins"]}}})


def test_announce_maps_actions_and_undos_once(tmp_path: Path) -> None:
    store = SsfStore(tmp_path / "ssf.db")
    inv = YamlInventory.from_paths([REPO / "inventory"])
    tx = Transmitter("https://stanch.example", store, KeyStore(tmp_path / "k"), inv)
    stream = tx.create("rp", {"events_requested": sorted(events.TRANSMITTED)})
    other = tx.create("rp2", {"events_requested": [events.SESSION_REVOKED]})
    records = [_record(1, AuditType.action_result, "revoke", "applied"),
               _record(2, AuditType.revert, "revoke", "undone"),
               _record(3, AuditType.revert, "reduce_scope", "undone"),
               _record(4, AuditType.action_result, "rotate", "already"),
               _record(5, AuditType.action_result, "force_reauth", "applied")]
    for r in records:
        tx.announce(r)
    for r in records:  # a restarted emitter announcing again queues nothing new
        tx.announce(r)
    queued = store.pending(stream["stream_id"])
    assert [q.event_type for q in queued] == [events.ACCOUNT_DISABLED, events.ACCOUNT_ENABLED,
                                              events.TOKEN_CLAIMS_CHANGE,
                                              events.SESSION_REVOKED]
    claims = [jwt.decode(q.token, options={"verify_signature": False}) for q in queued]
    assert all(c["txn"] == "containment-abc" and c["sub_id"] == {
        "format": "email", "email": "alice@example.com"} for c in claims)
    assert claims[2]["events"][events.TOKEN_CLAIMS_CHANGE]["claims"] == {"groups": ["admins"]}
    assert [q.event_type for q in store.pending(other["stream_id"])] == [
        events.SESSION_REVOKED]
    # a subject removed from a stream hears nothing more there; added back, it does
    s2 = store.stream(other["stream_id"])
    assert s2 is not None
    tx.change_subject(s2, {"format": "email", "email": "Alice@Example.com"}, add=False)
    tx.announce(_record(6, AuditType.action_result, "force_reauth", "applied"))
    assert len(store.pending(other["stream_id"])) == 1
    assert len(store.pending(stream["stream_id"])) == 5
    s2 = store.stream(other["stream_id"])
    assert s2 is not None and "excluded_subjects" not in tx.describe(s2)
    tx.change_subject(s2, {"format": "email", "email": "alice@example.com"}, add=True)
    tx.announce(_record(7, AuditType.action_result, "force_reauth", "applied"))
    assert len(store.pending(other["stream_id"])) == 2
    with pytest.raises(StreamError):
        tx.change_subject(s2, {"format": "opaque", "id": "x"}, add=False)
    store.close()


def test_simulate_accepts_a_compact_or_decoded_set(tmp_path: Path) -> None:
    claims = make_claims(iss=ISS, aud=AUD, event_type=events.CREDENTIAL_COMPROMISE,
                         event={"credential_type": "password"},
                         sub_id={"format": "email", "email": "alice@example.com"})
    (tmp_path / "set.jwt").write_text(sign(claims, KEY, "k1") + "\n")
    (tmp_path / "set.json").write_text(json.dumps(claims))
    runner = CliRunner()
    for name in ("set.jwt", "set.json"):
        result = runner.invoke(app, ["playbook", "simulate", str(tmp_path / name), "--json",
                                     "--playbooks", str(REPO / "playbooks"),
                                     "--inventory", str(REPO / "inventory")])
        assert result.exit_code == 0, result.output
        (run,) = json.loads(result.output)
        assert run["identity"] == "mock:u-alice" and run["playbook"] == "shared-signals"
        assert [s["action"] for s in run["plan"]["steps"]] == [
            "notify", "force_reauth", "rotate", "revoke"]


def test_a_key_is_loaded_once_and_a_rotation_elsewhere_is_seen(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Loading a PEM checks the RSA key (tens of ms): once per key per process, not once per
    SET. A rotation made by another process (another KeyStore) signs the next SET."""
    from cryptography.hazmat.primitives import serialization

    loads: list[bytes] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, password: bytes | None = None, **kw: Any) -> Any:
        loads.append(data)
        return real(data, password, **kw)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    worker = KeyStore(tmp_path / "keys")
    first = worker.signing_key()
    for _ in range(5):
        assert worker.signing_key().kid == first.kid
    assert len(loads) == 1
    second = KeyStore(tmp_path / "keys").rotate()  # e.g. `stanch ssf rotate-key`
    assert worker.signing_key().kid == second
    assert {k["kid"] for k in worker.jwks()["keys"]} == {first.kid, second}
    assert len(loads) == 2


async def test_the_emitter_announces_a_batch_and_skips_while_no_stream(tmp_path: Path) -> None:
    from stanch.audit.sqlite import SqliteAuditStore
    from stanch.config import Settings
    from stanch.models import AuditEvent
    from stanch.ssf.delivery import CURSOR, Emitter

    settings = Settings(state_dir=tmp_path / "state", inventory_paths=[REPO / "inventory"],
                        _env_file=None)  # type: ignore[call-arg]
    audit = SqliteAuditStore(tmp_path / "audit.db")
    store = SsfStore(tmp_path / "ssf.db")
    emitter = Emitter(settings, audit, client=None, store=store)  # type: ignore[arg-type]

    def applied(n: int) -> None:
        for i in range(n):
            r = _record(0, AuditType.action_result, "force_reauth", "applied")
            audit.append(AuditEvent(type=r.type, at=r.at, actor=r.actor, subject=r.subject,
                                    workflow_id=r.workflow_id, action_id=f"x{i}-{n}",
                                    phase="result", data=r.data,
                                    dedup_key=f"x{i}-{n}:result"))

    applied(3)  # no receiver yet: the cursor moves on, nothing is signed or queued
    assert await emitter.once() == 3
    assert emitter._transmitter is None and int(store.get_meta(CURSOR)) > 0
    stream = emitter.transmitter.create("rp", {"events_requested": [events.SESSION_REVOKED]})
    applied(4)
    assert await emitter.once() == 4
    assert [q.event_type for q in store.pending(stream["stream_id"])] == \
        [events.SESSION_REVOKED] * 4
    queued = audit.query(types=[AuditType.ssf_set_queued], limit=10)
    assert len(queued) == 4 and all(r.data["streams"] == [stream["stream_id"]] for r in queued)
    assert await emitter.once() == 0  # announced once: the cursor is past them
    # those records named no subject: the inventory was read for them. A record that
    # carries its subject (every action since) needs none.
    assert emitter.transmitter.inventory._inventory is not None  # type: ignore[union-attr]
    fresh = Emitter(settings, audit, client=None, store=store)  # type: ignore[arg-type]
    r = _record(0, AuditType.action_result, "force_reauth", "applied")
    named = {"format": "iss_sub", "iss": "https://idp.example", "sub": "00u1"}
    audit.append(AuditEvent(type=r.type, at=r.at, actor=r.actor, subject="mock:nobody",
                            workflow_id=r.workflow_id, action_id="y1", phase="result",
                            data={**r.data, "subject": named}, dedup_key="y1:result"))
    assert await fresh.once() == 1
    last = store.pending(stream["stream_id"])[-1]
    assert jwt.decode(last.token, options={"verify_signature": False})["sub_id"] == named
    assert fresh.transmitter.inventory._inventory is None  # type: ignore[union-attr]
    store.close()
    audit.close()


async def test_seen_jtis_are_forgotten_once_no_replay_could_be_accepted(tmp_path: Path
                                                                         ) -> None:
    """A jti must be remembered only while a SET carrying it could still pass the age
    check; after max_set_age + clock_skew a replay is refused by its iat anyway."""
    from stanch.ssf.config import SsfSettings
    from stanch.ssf.receiver import Receiver

    store = SsfStore(tmp_path / "ssf.db")
    receiver = Receiver(SsfSettings(max_set_age_seconds=3600, clock_skew_seconds=60), store,
                        audit=None, default_audience=AUD)  # type: ignore[arg-type]
    store.remember("okta", "old", "alert")
    store.remember("okta", "recent", "alert")
    store._x("UPDATE received SET at = ? WHERE jti = 'old'", (time.time() - 3600 - 61,))
    store._x("UPDATE received SET at = ? WHERE jti = 'recent'", (time.time() - 3600 + 60,))
    await receiver._forget_old_jtis()
    assert store.seen("okta", "old") is None and store.seen("okta", "recent") == "alert"
    store.remember("okta", "old2", "alert")
    store._x("UPDATE received SET at = 0 WHERE jti = 'old2'")
    await receiver._forget_old_jtis()  # at most once an hour
    assert store.seen("okta", "old2") == "alert"
    # and a replay of a forgotten one is refused by its age
    stale = _token({"format": "email", "email": "a@example.com"},
                   iat=int(time.time()) - 3600 - 61)
    with pytest.raises(SetError):
        await validate(stale, key=_key, issuer=ISS, audience=AUD, now=time.time(),
                       max_age=3600, skew=60)
    store.close()
