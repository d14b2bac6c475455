"""Console benchmark: the inbox with many steps waiting, and a decision from the console.

    python -m bench.console_bench                     # 1,000 waiting, 40 renders, 15+15 decisions
    python -m bench.console_bench --waiting 100 --renders 10 --decisions 5

On ``stanch up``'s processes (bench/stack.py), signed in with a one-time link as dev-admin:

* **inbox render**: ``GET /ui/`` with N containments parked on approval, server-side time
  from the console's ``Server-Timing`` header: the first render after parking, how many
  one-second polls the console needs to read every waiting containment (100 per poll),
  then the renders once it has (warm), and the poll fragment (``GET /ui/inbox/list``);
* **decision round trip**: from sending an approval to the step's write at the mock IdP,
  for steps approved through the API (``POST /v1/containments/{id}/decisions``) and through
  the console's form (``POST /ui/c/{id}/decide``), alternating, on fresh identities.

Prints a table and writes bench/results/console-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import stack as stack_mod
from bench.e2e import ChangeWatcher, Driver, pct
from stanch.console import mint_login_link

RESULTS = Path(__file__).resolve().parent / "results"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _server_ms(resp: httpx.Response) -> float:
    timing = resp.headers.get("server-timing", "")
    match = re.search(r"dur=([0-9.]+)", timing)
    if resp.status_code != 200 or match is None:
        raise RuntimeError(f"{resp.request.url}: {resp.status_code} {resp.text[:200]}")
    return float(match.group(1))


def _stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "max_ms": max(ms)}


async def _wait_waiting(d: Driver, n: int, timeout: float = 300) -> int:
    assert d.temporal is not None
    query = "WorkflowType = 'ContainmentWorkflow' AND StanchStatus = 'awaiting_approval'"
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = (await d.temporal.count_workflows(query)).count
        if count >= n:
            return count
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only {count} of {n} containments reached awaiting_approval")


async def run(waiting: int, renders: int, decisions: int) -> dict[str, Any]:
    stack = stack_mod.start(contained=2 * decisions, waiting=waiting)
    try:
        async with Driver(stack, uuid.uuid4().hex[:8]) as d, httpx.AsyncClient(
                base_url=stack.api, timeout=60) as ui:
            t0 = time.perf_counter()
            await d.park(d.take_waiting(waiting), "wait", 20)
            parked = await _wait_waiting(d, waiting)
            park_s = time.perf_counter() - t0
            token = mint_login_link(stack.state, "dev-admin")
            (await ui.post("/ui/login/link", data={"token": token})).raise_for_status()

            cold = _server_ms(await ui.get("/ui/"))
            # After a restart the console reads waiting containments 100 per poll: poll
            # (as an open inbox does, every second) until it has read them all.
            t1, warmup_polls = time.perf_counter(), 0
            while "Still reading the state" in (await ui.get("/ui/inbox/list")).text:
                warmup_polls += 1
                await asyncio.sleep(1.0)
            warmup_s = time.perf_counter() - t1
            page_ms, poll_ms, sizes = [], [], []
            for _ in range(renders):
                resp = await ui.get("/ui/")
                page_ms.append(_server_ms(resp))
                sizes.append(len(resp.content))
                poll_ms.append(_server_ms(await ui.get("/ui/inbox/list")))
            shown = len(re.findall(r'class="card step"', resp.text))

            ids = d.take(2 * decisions)
            wids = await d.park(ids, "decide", 20)
            steps = {i: await d.pending_step(wids[i]) for i in ids}
            via: dict[str, list[float]] = {"api": [], "console": []}
            async with ChangeWatcher(d.http, stack.idp) as watcher:
                for n, ident in enumerate(ids):
                    channel = "api" if n % 2 == 0 else "console"
                    wid, step = wids[ident], steps[ident]
                    if channel == "console":
                        csrf = _CSRF.search((await ui.get(f"/ui/c/{wid}")).text)
                        assert csrf is not None, "no CSRF token on the containment page"
                        form = {"csrf": csrf.group(1), "step": step, "verdict": "approve",
                                "comment": "bench", "next": f"/ui/c/{wid}"}
                    sent = time.time()
                    if channel == "api":
                        r = await d.http.post(
                            f"{stack.api}/v1/containments/{wid}/decisions",
                            json={"step": step, "verdict": "approve", "comment": "bench"},
                            headers={"Authorization": f"Bearer {stack.admin_token}"})
                        ok = r.status_code == 200
                    else:
                        rr = await ui.post(f"/ui/c/{wid}/decide", data=form)
                        ok = rr.status_code == 303
                    if not ok:
                        raise RuntimeError(f"{channel} decision on {wid} failed")
                    via[channel].append((await watcher.first_write(ident) - sent) * 1000)
    finally:
        stack.stop()
    shutil.rmtree(stack.state, ignore_errors=True)  # kept when the run failed
    return {
        "waiting": parked, "seconds_to_park": park_s, "cards_on_page": shown,
        "page_bytes": max(sizes) if sizes else 0,
        "inbox_cold_ms": cold, "warmup_polls": warmup_polls, "warmup_s": warmup_s,
        "inbox": _stats(page_ms), "inbox_poll": _stats(poll_ms),
        "decision_api": _stats(via["api"]), "decision_console": _stats(via["console"]),
    }


def render(r: dict[str, Any]) -> str:
    p, q = r["inbox"], r["inbox_poll"]
    a, c = r["decision_api"], r["decision_console"]
    lines = [
        f"console, {r['waiting']} containments awaiting approval "
        f"(parked in {r['seconds_to_park']:.0f} s; {r['cards_on_page']} cards, "
        f"{r['page_bytes'] / 1024:.0f} KiB per page)",
        f"  first inbox after parking      {r['inbox_cold_ms']:.0f} ms; all read after "
        f"{r['warmup_polls']} more polls ({r['warmup_s']:.0f} s)",
        f"  inbox GET /ui/ server-side     warm p50 "
        f"{p['p50_ms']:.0f} ms, p95 {p['p95_ms']:.0f} ms (n={p['n']})  [target p95 ≤ 300 ms]",
        f"  poll  GET /ui/inbox/list       p50 {q['p50_ms']:.0f} ms, p95 {q['p95_ms']:.0f} ms",
        f"  approve → IdP write, API       p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms"
        f" (n={a['n']})",
        f"  approve → IdP write, console   p50 {c['p50_ms']:.0f} ms, p95 {c['p95_ms']:.0f} ms"
        f" (n={c['n']})  [target ≤ API + 50 ms]",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--renders", type=int, default=40)
    parser.add_argument("--decisions", type=int, default=15,
                        help="approvals through each of the API and the console")
    args = parser.parse_args()
    result = asyncio.run(run(args.waiting, args.renders, args.decisions))
    print(render(result))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"console-{stamp}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
