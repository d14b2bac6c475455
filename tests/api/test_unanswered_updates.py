"""A request never hangs on a task queue no worker polls: after
``temporal.update_timeout_seconds`` it is answered 503 with ``Retry-After``, and the other
requests go on being answered meanwhile. When a worker comes back, the admitted alert runs
and a repeat of it is deduplicated."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import httpx
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings, SourceAuth
from stanch.worker import build_worker
from tests.observability.test_metrics import ALERT

SOURCE = "generic-source-token-unanswered"
ADMIN = "admin-token-unanswered-updates"


async def test_no_worker_means_503_in_time_and_no_other_request_waits(
        dev_env: WorkflowEnvironment, settings: Settings, task_queue: str) -> None:
    settings = settings.model_copy(update={
        "temporal": settings.temporal.model_copy(update={
            "task_queue": task_queue, "update_timeout_seconds": 1.5}),
        "sources": {"generic": SourceAuth(mode="bearer", secrets=[SecretStr(SOURCE)])},
        "api_tokens": [ApiToken(sha256=hashlib.sha256(ADMIN.encode()).hexdigest(),
                                principal="dev-admin", roles=["admin"],
                                groups=["soc-approvers"])],
    })
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client, audit=store)
    alert = ALERT | {"id": uuid.uuid4().hex}
    body = json.dumps(alert)
    source = {"Authorization": f"Bearer {SOURCE}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://api", timeout=30) as api:
            t0 = time.monotonic()
            post = asyncio.create_task(api.post("/v1/alerts/generic", content=body,
                                                headers=source))
            # meanwhile, another caller is answered at once
            health = await api.get("/healthz")
            assert health.status_code == 200 and time.monotonic() - t0 < 1.5
            r = await post
            waited = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] and 1.4 < waited < 10, waited
            assert "no worker answered the alert" in r.json()["detail"]
            # the alert was received and audited all the same (nothing a SIEM sends is lost)
            assert any(rec.type.value == "alert.received"
                       and rec.data.get("source_alert_id") == alert["id"]
                       for rec in store.query(limit=50))

            async with build_worker(dev_env.client, settings, store, task_queue=task_queue):
                again = await api.post("/v1/alerts/generic", content=body, headers=source)
                assert again.status_code == 202, again.text
                wid = again.json()["workflow_id"]
                # the admitted update ran once; the repeat joined it and changed nothing
                for _ in range(100):
                    st = (await api.get(f"/v1/containments/{wid}",
                                        headers={"Authorization": f"Bearer {ADMIN}"})).json()
                    if st.get("alerts_seen"):
                        break
                    await asyncio.sleep(0.1)
                assert st["alerts_seen"] == 1, st
                await dev_env.client.get_workflow_handle(wid).terminate("test done")
    finally:
        store.close()


async def test_answered_bounds_any_update_and_keeps_its_answer() -> None:
    import pytest
    from temporalio.service import RPCError, RPCStatusCode

    from stanch.temporal import answered

    async def quick() -> str:
        return "decided"

    async def hangs_then_complains() -> str:  # as the SDK does when cancelled
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("Timeout or cancellation waiting for update") from None
        return "never"

    assert await answered(quick(), 1, "decision") == "decided"
    t0 = time.monotonic()
    with pytest.raises(RPCError) as err:
        await answered(hangs_then_complains(), 0.2, "decision")
    assert err.value.status is RPCStatusCode.DEADLINE_EXCEEDED
    assert "no worker answered the decision within 0.2 s" in err.value.message
    assert time.monotonic() - t0 < 2
