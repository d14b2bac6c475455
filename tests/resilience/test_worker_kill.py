"""kill -9 the worker at random moments while containments run; each still ends right, once."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.resilience.conftest import pool
from tests.resilience.stack import SIZE, Stack, check_contained, contained, report, sized

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(sized(240, 1800))]


def test_worker_killed_at_random_moments(stack: Stack) -> None:
    rng = random.Random(9)
    idents = pool("kill")
    stack.create_identities(idents)
    t0 = time.monotonic()
    kills = 0
    started_before = stack.starts["worker"]
    wids: dict[str, str] = {}
    # Alerts arrive over a spread of time, so kills land before, during and after actions.
    spread = sized(4, 40)
    with ThreadPoolExecutor(8) as ex:
        def deliver(i: int, ident: str) -> tuple[str, str]:
            time.sleep(spread * i / len(idents))
            answer = stack.post_alert(ident, f"kill-alert-{ident}")
            if i % 7 == 0:  # a SIEM retry of the same alert: deduplicated, nothing re-runs
                again = stack.post_alert(ident, f"kill-alert-{ident}")
                assert again["deduplicated"] is True, again
            return ident, answer["workflow_id"]

        futures = [ex.submit(deliver, i, ident) for i, ident in enumerate(idents)]
        target_kills = sized(3, 30)
        while kills < target_kills:
            time.sleep(rng.uniform(0.3, 2.5 if SIZE != "full" else 4.0))
            stack.kill_worker()
            kills += 1
            time.sleep(rng.uniform(0.0, 1.0))
            stack.start_worker()
        wids = dict(f.result() for f in futures)

    # Activities that were running on a killed worker come back after their start-to-close
    # timeout (30 s); allow a few of those rounds.
    stack.wait_for(wids.values(), contained, timeout=sized(150, 900))
    counts = check_contained(stack, wids)
    report("worker kill -9", containments=counts["containments"], kills=kills,
           restarts=stack.starts["worker"] - started_before,
           duplicate_effects=counts["duplicate_effects"],
           lost_alerts=counts["lost_alerts"], audit_records=counts["audit_records"],
           seconds=round(time.monotonic() - t0))
