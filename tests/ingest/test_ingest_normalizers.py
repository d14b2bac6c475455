"""Behaviour the fixtures do not show: secrets never kept, dedup rules, error paths."""

from __future__ import annotations

import copy
import json

import pytest

from stanch.ingest import NormalizeError, UnknownSource, normalize
from stanch.models import Category, Level

from .conftest import FIXTURES, NOW


def _load(source: str, name: str) -> dict:
    return json.loads((FIXTURES / source / f"{name}.json").read_text())


def test_github_secret_is_never_kept():
    payload = _load("github", "pat-public-repo")
    secret = payload["alert"]["secret"]
    [alert] = normalize("github", payload, NOW)
    dumped = alert.model_dump_json()
    assert secret not in dumped
    assert alert.raw["alert"]["secret"] == "[REDACTED]"
    assert payload["alert"]["secret"] == secret  # the caller's payload is not mutated


def test_github_secret_is_masked_even_where_github_repeats_it():
    payload = _load("github", "pat-public-repo")
    secret = payload["alert"]["secret"]
    payload["alert"]["resolution_comment"] = f"rotated {secret} already"
    payload["alert"]["secret_type_display_name"] = f"token {secret}"
    [alert] = normalize("github", payload, NOW)
    assert secret not in alert.model_dump_json()


def test_github_dedup_ignores_action():
    payload = _load("github", "aws-key-created")
    ids = set()
    for action in ("created", "validated", "reopened", "publicly_leaked"):
        p = copy.deepcopy(payload)
        p["action"] = action
        ids.add(normalize("github", p, NOW)[0].id)
    assert len(ids) == 1


def test_github_aws_key_keeps_key_id_not_fingerprint():
    [alert] = normalize("github", _load("github", "aws-key-created"), NOW)
    assert alert.mentions[0].name == "AKIAMOCKDEPLOY0001"


def test_splunk_dedup_is_sid_plus_row():
    payload = _load("splunk", "aws-key-enumeration")
    a = normalize("splunk", payload, NOW)[0]
    reordered = dict(reversed(list(payload["result"].items())))
    b = normalize("splunk", {**payload, "result": reordered}, NOW)[0]
    assert a.id == b.id  # key order is not content
    row = {**payload["result"], "access_key_id": "AKIAIOSFODNN7EXAMPLE"}
    other_row = {**payload, "result": row}
    assert normalize("splunk", other_row, NOW)[0].id != a.id


def test_elastic_one_body_many_alerts_each_with_its_own_id():
    alerts = normalize("elastic", _load("elastic", "kibana-context-alerts"), NOW)
    assert len({a.id for a in alerts}) == 2


def test_alert_without_identities_is_valid_with_empty_mentions():
    payload = _load("guardduty", "tor-ip-caller")
    del payload["detail"]["resource"]
    [alert] = normalize("guardduty", payload, NOW)
    assert alert.mentions == []


@pytest.mark.parametrize(("source", "payload", "where"), [
    ("elastic", {"context": {"alerts": [{"kibana": {"alert": {"uuid": 5.5e400}}}]}},
     "context.alerts[0].kibana.alert.uuid"),
    ("elastic", {"context": {"alerts": "nope"}}, "context.alerts"),
    ("splunk", {"result": {}}, "sid"),
    ("splunk", {"sid": "1", "result": []}, "result"),
    ("sentinel", {"object": {"properties": {}}}, "object.name"),
    ("sentinel", {"object": {"name": "x"}}, "object.properties"),
    ("crowdstrike", {"metadata": {}, "event": {}}, "event.CompositeId"),
    ("crowdstrike", {"metadata": {}}, "event"),
    ("datadog", {"SECURITY_SIGNAL_ID": "$SECURITY_SIGNAL_ID"}, "SECURITY_SIGNAL_ID"),
    ("guardduty", {"detail-type": "GuardDuty Finding", "detail": {}}, "detail.id"),
    ("github", {"alert": {"number": 1}, "repository": {}}, "repository.full_name"),
    ("github", {"alert": {}, "repository": {"full_name": "a/b"}}, "alert.number"),
    ("ocsf", {"class_uid": 3002, "finding_info": {"uid": "x"}}, "class_uid"),
    ("ocsf", {"class_uid": 2004, "finding_info": {}}, "finding_info.uid"),
    ("generic", {"id": "x", "category": "manual"}, "category"),
    ("generic", [{"id": "x"}, {"id": "y", "identities": [{"type": "upn"}]}],
     "[1].identities[0].name"),
    ("generic", {"id": "x", "severity": "extreme"}, "severity"),
])
def test_errors_name_the_json_path(source, payload, where):
    with pytest.raises(NormalizeError) as err:
        normalize(source, payload, NOW)
    assert err.value.where == where
    assert str(err.value).startswith(f"{where}: ")
    assert err.value.status == 422


def test_unknown_source():
    with pytest.raises(UnknownSource) as err:
        normalize("nagios", {}, NOW)
    assert err.value.status == 404


def test_guardduty_type_table():
    from stanch.ingest.sources.guardduty import category_for_type

    assert category_for_type("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
                             ) is Category.leaked_secret
    assert category_for_type("CredentialAccess:IAMUser/AnomalousBehavior") is Category.leaked_secret
    assert category_for_type("PrivilegeEscalation:IAMUser/AnomalousBehavior"
                             ) is Category.privilege_escalation
    assert category_for_type("UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B"
                             ) is Category.risky_sign_in
    assert category_for_type("CryptoCurrency:EC2/BitcoinTool.B!DNS") is Category.malware_on_host
    assert category_for_type("Discovery:IAMUser/AnomalousBehavior") is Category.anomalous_api_use
    assert category_for_type("Recon:EC2/PortProbeUnprotectedPort") is Category.anomalous_api_use


def test_guardduty_severity_bands():
    payload = _load("guardduty", "tor-ip-caller")
    got = []
    for sev in (0.5, 2.0, 5.0, 8.9, 9.5):
        payload["detail"]["severity"] = sev
        got.append(normalize("guardduty", payload, NOW)[0].severity)
    assert got == [Level.info, Level.low, Level.medium, Level.high, Level.critical]


def test_crowdstrike_endpoint_malware_and_identity_privesc():
    payload = _load("crowdstrike", "endpoint-credential-dumping")
    payload["event"]["Tactic"] = "Execution"
    assert normalize("crowdstrike", payload, NOW)[0].category is Category.malware_on_host
    idp = _load("crowdstrike", "identity-bad-reputation")
    idp["event"]["DetectName"] = "Privilege escalation via added admin group membership"
    assert normalize("crowdstrike", idp, NOW)[0].category is Category.privilege_escalation
