"""Push delivery of one stream's SETs: a long-lived workflow, one per push stream.

The queue lives in the SSF store; this workflow only makes sure the activity that drains
it runs, in order, with retries and backoff, across worker and server restarts. The emitter
(and the API, after a verification request) signals ``kick`` when it queued something; a
timer sweeps anyway every few minutes. Deterministic: no I/O here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

SWEEP = timedelta(minutes=5)
RUNS_BEFORE_CONTINUE = 200
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=5))


def push_workflow_id(stream_id: str) -> str:
    return f"ssf-push-{stream_id}"


@workflow.defn(name="SsfPushWorkflow")
class SsfPushWorkflow:
    @workflow.init
    def __init__(self, stream_id: str) -> None:
        self._kicked = True

    @workflow.signal
    def kick(self) -> None:
        self._kicked = True

    @workflow.run
    async def run(self, stream_id: str) -> None:
        for _ in range(RUNS_BEFORE_CONTINUE):
            try:
                await workflow.wait_condition(lambda: self._kicked, timeout=SWEEP)
            except TimeoutError:
                pass  # sweep: deliver whatever waits even without a kick
            self._kicked = False
            outcome = await workflow.execute_activity(
                "ssf_push_pending", stream_id, result_type=dict,
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=timedelta(seconds=30), retry_policy=RETRY)
            if outcome.get("gone"):
                return
        workflow.continue_as_new(stream_id)
