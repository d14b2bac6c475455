"""Stop the Temporal dev server mid-flight and start it again on the same database file."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.resilience.conftest import pool
from tests.resilience.stack import Stack, check_contained, contained, report, sized

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(sized(180, 1200))]


def test_temporal_restarted_mid_flight(stack: Stack) -> None:
    idents = pool("srv")
    stack.create_identities(idents)
    t0 = time.monotonic()
    restarts = sized(1, 3)
    spread = sized(4, 30)
    with ThreadPoolExecutor(8) as ex:
        def deliver(i: int, ident: str) -> tuple[str, str]:
            time.sleep(spread * i / len(idents))
            return ident, stack.post_alert(ident, f"srv-alert-{ident}")["workflow_id"]

        futures = [ex.submit(deliver, i, ident) for i, ident in enumerate(idents)]
        for _ in range(restarts):
            time.sleep(spread / (restarts + 1))
            stack.stop_temporal()
            time.sleep(1.0)  # alerts meanwhile get 503 and are retried, as a SIEM would
            stack.start_temporal()
        wids = dict(f.result() for f in futures)

    stack.wait_for(wids.values(), contained, timeout=sized(120, 900))
    counts = check_contained(stack, wids)
    assert stack.children["worker"].alive(), stack.children["worker"].tail()
    report("temporal restart", containments=counts["containments"], kills=0,
           restarts=restarts, duplicate_effects=counts["duplicate_effects"],
           lost_alerts=counts["lost_alerts"], seconds=round(time.monotonic() - t0))
