"""docs/openapi.json is generated from the app, valid, and what the running API serves."""

from __future__ import annotations

import json

import httpx
import pytest
from openapi_spec_validator import validate

from stanch.api.contract import PUBLISHED, SOURCE_SCHEMES, published, reference_app
from stanch.api.problems import MEDIA_TYPE
from tests.contract.conftest import ContractStack

REGENERATE = "regenerate it: .venv/bin/python -m stanch.api.contract"


def test_the_published_document_is_the_generated_one_and_valid() -> None:
    assert PUBLISHED.read_text() == published(reference_app()), REGENERATE
    validate(json.loads(PUBLISHED.read_text()))


@pytest.mark.e2e
async def test_the_running_api_serves_the_published_document(
        contract_stack: ContractStack) -> None:
    async with httpx.AsyncClient(base_url=contract_stack.url, timeout=30) as http:
        served = (await http.get("/openapi.json")).json()
    assert served == json.loads(PUBLISHED.read_text()), REGENERATE


def test_every_operation_says_who_may_call_it_and_how_it_fails() -> None:
    doc = json.loads(PUBLISHED.read_text())
    schemes = doc["components"]["securitySchemes"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert "security" in op, where
            for requirement in op["security"]:
                assert set(requirement) <= set(schemes), where
            errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
            for status, response in errors.items():
                if where == "POST /v1/ssf/push/{name}" and status in ("400", "401", "503"):
                    # RFC 8935 §2.3: the push receiver answers in the transmitters' shape.
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/SetErrorBody"}, status
                    continue
                assert list(response["content"]) == [MEDIA_TYPE], (where, status)
            if op["security"]:
                assert "401" in errors, where
            if op.get("parameters") or "requestBody" in op:
                assert "422" in errors or "400" in errors, where
    alerts = doc["paths"]["/v1/alerts/{source}"]["post"]
    assert [next(iter(r)) for r in alerts["security"]] == list(SOURCE_SCHEMES)
    slack = doc["paths"]["/v1/integrations/slack/interactions"]["post"]
    assert slack["security"] == [{"slackSignature": []}]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    manual = doc["components"]["schemas"]["ManualRequest"]["properties"]
    assert "notify" not in json.dumps(manual["level"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
