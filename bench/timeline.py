"""Where one serial containment's time goes, next to the floor's: segment by segment.

    python -m bench.timeline            # 100 rounds (about a minute and a half)
    python -m bench.timeline --pairs 40

On the same stack as ``python -m bench`` (its own, on free ports), rounds of one floor
workflow, one evidence-floor workflow (``bench.floor``: the activity reads the before-state,
records it durably, then POSTs; no Stanch code) and one alert, in a shuffled order, each on
a fresh identity, one at a time. For each it reads the
workflow's history (Temporal's event times), Stanch's audit records (their ``at``) and the
mock IdP's change log (the write's ``at``): every clock is this machine's. It prints the
median and p90 of each segment, so a difference in time-to-contain can be put where it is:

  sent -> started        client or API until Temporal recorded the start
  task queued -> started the first workflow task waiting for a worker
  task started -> done   the worker running that task (for a new run: the sandbox, the
                         workflow code, payload conversion) and the server recording it
  done -> activity start the activity task reaching the worker
  activity -> intent     Stanch: prior-intent lookup, before-snapshot, intent record;
                         evidence floor: before-state GET, its record committed
  activity -> write      the activity until the IdP's change-log ``at``
  total                  sent -> write, as time-to-contain and the floor's serial figure
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import uuid
from datetime import datetime
from typing import Any

from bench import stack as stack_mod
from bench.e2e import ChangeWatcher, Driver, pct

# Temporal EventType numbers (temporal.api.enums.v1.EventType).
STARTED, TASK_SCHEDULED, TASK_STARTED, TASK_COMPLETED = 1, 5, 6, 7
ACTIVITY_STARTED = 11
KINDS = ("floor", "evidence", "stanch")


def _first_times(events: Any) -> dict[int, float]:
    out: dict[int, float] = {}
    for e in events:
        out.setdefault(int(e.event_type), e.event_time.seconds + e.event_time.nanos / 1e9)
    return out


def segments(sent: float, written: float, ev: dict[int, float],
             intent_at: float | None = None) -> dict[str, float]:
    seg = {
        "sent -> started": ev[STARTED] - sent,
        "task queued -> started": ev[TASK_STARTED] - ev[TASK_SCHEDULED],
        "task started -> done": ev[TASK_COMPLETED] - ev[TASK_STARTED],
        "done -> activity start": ev[ACTIVITY_STARTED] - ev[TASK_COMPLETED],
        "activity -> write": written - ev[ACTIVITY_STARTED],
        "total (sent -> write)": written - sent,
    }
    if intent_at is not None:
        seg["activity -> intent"] = intent_at - ev[ACTIVITY_STARTED]
    return {k: v * 1000 for k, v in seg.items()}


async def run(stack: stack_mod.Stack, pairs: int, warm: int = 5) -> dict[str, Any]:
    # sent, written, workflow id, identity
    rows: dict[str, list[tuple[float, float, str, str]]] = {k: [] for k in KINDS}
    async with Driver(stack, uuid.uuid4().hex[:8]) as d:
        assert d.temporal is not None
        async with ChangeWatcher(d.http, stack.idp, interval=0.002) as watcher:
            order = random.Random(0)
            for i in range(pairs + warm):
                # Each kind follows each other kind alike: a sample right after a
                # containment shares the CPU with that containment's tail (its result
                # record, second workflow task), so a fixed order would favour one side.
                for kind in order.sample(KINDS, len(KINDS)):
                    ident = d.take(1)[0]
                    if kind == "floor":
                        sent, at, _, wid = await d.floor_run(watcher, ident)
                    elif kind == "evidence":
                        sent, at, _, wid = await d.floor_run(watcher, ident, evidence=True)
                    else:
                        sent, at, _, wid = await d.contain_run(watcher, ident, "timeline")
                    if i >= warm:
                        rows[kind].append((sent, at, wid, ident))
        out: dict[str, Any] = {}
        db = sqlite3.connect(f"file:{stack.state / 'audit.db'}?mode=ro", uri=True)
        ev_db = sqlite3.connect(f"file:{stack.state / 'floor-evidence.db'}?mode=ro", uri=True)
        try:
            for side in KINDS:
                cols: dict[str, list[float]] = {}
                for sent, at, wid, ident in rows[side]:
                    history = await d.temporal.get_workflow_handle(wid).fetch_history()
                    intent = None
                    if side == "stanch":
                        got = db.execute("SELECT at FROM audit_records WHERE workflow_id = ? "
                                         "AND type = 'action.intent' ORDER BY seq LIMIT 1",
                                         (wid,)).fetchone()
                        intent = datetime.fromisoformat(got[0]).timestamp() if got else None
                    elif side == "evidence":
                        got = ev_db.execute("SELECT at FROM evidence WHERE identity = ?",
                                            (ident,)).fetchone()
                        intent = float(got[0]) if got else None
                    for k, v in segments(sent, at, _first_times(history.events),
                                         intent).items():
                        cols.setdefault(k, []).append(v)
                out[side] = {k: {"p50_ms": pct(v, 50), "p90_ms": pct(v, 90), "n": len(v)}
                             for k, v in cols.items()}
        finally:
            db.close()
            ev_db.close()
    return out


ORDER = ["sent -> started", "task queued -> started", "task started -> done",
         "done -> activity start", "activity -> intent", "activity -> write",
         "total (sent -> write)"]


def render(result: dict[str, Any]) -> str:
    def cell(x: dict[str, float] | None, key: str) -> str:
        return f"{x[key]:.1f}" if x else "-"

    lines = [f"{'segment':<26}{'floor p50':>11}{'p90':>8}{'evidence p50':>14}{'p90':>8}"
             f"{'stanch p50':>12}{'p90':>8}"]
    for k in ORDER:
        f, e, s = (result[side].get(k) for side in ("floor", "evidence", "stanch"))
        lines.append(f"{k:<26}{cell(f, 'p50_ms'):>11}{cell(f, 'p90_ms'):>8}"
                     f"{cell(e, 'p50_ms'):>14}{cell(e, 'p90_ms'):>8}"
                     f"{cell(s, 'p50_ms'):>12}{cell(s, 'p90_ms'):>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    args = parser.parse_args()
    stack = stack_mod.start(contained=3 * (args.pairs + 5), waiting=0)
    try:
        result = asyncio.run(run(stack, args.pairs))
    finally:
        stack.stop()
    shutil.rmtree(stack.state, ignore_errors=True)  # kept when the run failed
    print(f"ms, {args.pairs} rounds of a floor workflow, an evidence-floor workflow and an "
          "alert, one at a time, shuffled, fresh identities")
    print(render(result))


if __name__ == "__main__":
    main()
