"""End-to-end benchmark: Stanch on the embedded dev server against a bare-Temporal floor.

    python -m bench            # full sizes (make bench), < 10 minutes
    python -m bench --quick    # smaller sizes, < 2 minutes
    python -m bench --quick --serial 5 --concurrent 20 --storm-alerts 200 ...   # tinier

Prints one table and writes every figure to bench/results/bench-<timestamp>.json.
What each figure means: docs/benchmarks.md. The ingest micro-benchmark is separate:
``python -m bench.ingest_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import stack as stack_mod
from bench.e2e import Driver
from bench.profile import Sampler, pids_for
from bench.profile import render as render_profiles
from bench.report import checks, render
from bench.ssf_receiver import Receiver

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sizes:
    serial: int = 200            # serial samples (floor, time-to-contain)
    concurrent: int = 300        # workflows / alerts in each 50-concurrent throughput run
    concurrency: int = 50
    rounds: int = 3              # throughput pairs (floor, then Stanch), interleaved
    storm_alerts: int = 10_000
    storm_identities: int = 100
    approvals: int = 100
    waiting: int = 10_000        # containments parked on approval for the RSS figure


QUICK = Sizes(serial=40, concurrent=100, storm_alerts=1000, approvals=20, waiting=1000)

# Seconds of sending: the whole run's (what keeps `make bench` under 10 minutes on a loaded
# machine), each phase's most, and what each phase keeps for itself from the phases before
# it. A phase may use what earlier phases left unused, up to its own most. A phase cut
# short says so in the table ("N of M (time budget)").
TOTAL = 540.0
BUDGETS = {"serial": 60.0, "throughput": 150.0, "storm": 200.0, "approval": 45.0,
           "memory": 400.0}
RESERVED = {"serial": 20.0, "throughput": 45.0, "storm": 60.0, "approval": 10.0,
            "memory": 60.0}
QUICK_TOTAL = 100.0
QUICK_BUDGETS = {"serial": 15.0, "throughput": 30.0, "storm": 20.0, "approval": 10.0,
                 "memory": 30.0}
QUICK_RESERVED = {k: v / 2 for k, v in QUICK_BUDGETS.items()}


def _machine() -> dict[str, Any]:
    return {"host": platform.node(), "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(), "memory_gb": round(psutil.virtual_memory().total / 2**30),
            "load_avg_at_start": os.getloadavg()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


async def _measure(stack: stack_mod.Stack, sizes: Sizes, plan: dict[str, Any],
                   log: Any) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {}
    procs = {n: psutil.Process(stack.pid(n)) for n in
             ("temporal", "mock-idp", "worker", "api", "floor")}
    procs["bench-client"] = psutil.Process()  # the load generator: this process

    def cpu() -> dict[str, float]:
        return {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}

    cpu_start = cpu()
    deadline = time.perf_counter() + plan["total"]
    caps, reserved = plan["budgets"], plan["reserved"]
    b: dict[str, float] = {}
    receiver = Receiver() if plan["ssf"] else None
    async with Driver(stack, run) as d:
        d.cpu, d.receiver = cpu, receiver
        if receiver is not None:
            # A relying party on a push stream: every containment below also signs, queues
            # and pushes a SET, as it would for a real one (docs/ssf.md).
            await receiver.start()
            out["ssf_stream"] = await receiver.subscribe(d.http, stack.api, stack.admin_token)
            log(f"bench: SSF push stream {out['ssf_stream']} -> {receiver.url}")
        phases = [
            ("serial", lambda: d.serial(sizes.serial, b["serial"])),
            ("throughput", lambda: d.throughput(
                sizes.rounds, sizes.concurrent, sizes.concurrency, b["throughput"])),
            ("storm", lambda: d.storm(sizes.storm_alerts, sizes.storm_identities,
                                      sizes.concurrency, b["storm"])),
            ("approval", lambda: d.approvals(sizes.approvals, sizes.concurrency,
                                             b["approval"])),
            ("memory", lambda: d.waiting_rss(sizes.waiting, sizes.concurrency, b["memory"])),
        ]
        names = [n for n, _ in phases]
        for i, (name, phase) in enumerate(phases):
            t0 = time.perf_counter()
            later = sum(reserved[n] for n in names[i + 1:])
            b[name] = max(reserved[name], min(caps[name], deadline - t0 - later))
            c0 = cpu()
            log(f"bench: {name} (sending for at most {b[name]:.0f}s) …")
            sampler = None
            if plan["profile"] and name == plan["profile_phase"]:
                sampler = Sampler(pids_for(plan["profile"], stack.pid), stack.state, name)
                sampler.start()
            out[name] = await phase()
            secs = time.perf_counter() - t0
            if sampler is not None:
                out["profiles"] = sampler.stop(secs)
            out[name]["phase_seconds"] = secs
            out[name]["budget_s"] = b[name]
            # Which process was busy: CPU seconds each used during the phase, and as a
            # share of one core (the machine has os.cpu_count() of them).
            out[name]["cpu_seconds"] = {n: round(v - c0[n], 1) for n, v in cpu().items()}
            busy = ", ".join(f"{n} {v / secs:.0%}" for n, v in
                             sorted(out[name]["cpu_seconds"].items(), key=lambda kv: -kv[1]))
            log(f"bench: {name} done in {secs:.1f}s (of one core: {busy})")
        if receiver is not None:
            out["ssf"] = await d.ssf_delivery(receiver)
            await receiver.stop()
        out["errors"] = {"count": len(d.errors), "first": d.errors[:10]}
    out["cpu_seconds"] = {n: round(v - cpu_start[n], 1) for n, v in cpu().items()}
    return out


def _start_postgres(log: Any) -> tuple[Any, str]:
    """A throwaway cluster (never a server the bench did not start), the audit schema set up
    by its owner, and the DSN of the worker role the API and worker then use."""
    from psycopg.conninfo import make_conninfo

    from stanch.audit.postgres import WORKER_ROLE, setup_postgres
    from tests.pgserver import PostgresServer

    server = PostgresServer.start()
    setup_postgres(server.dsn, "stanch_audit")
    log(f"bench: PostgreSQL audit store on port {server.port}")
    return server, make_conninfo(server.dsn, user=WORKER_ROLE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (< 2 minutes)")
    for name, default in asdict(Sizes()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"override (full: {default}, quick: {getattr(QUICK, name)})")
    parser.add_argument("--profile", default="",
                        help="comma-separated processes to sample with py-spy during one "
                             "phase: worker, api, mock-idp, floor (raw stacks in the kept "
                             "state dir, a summary in the table and the JSON)")
    parser.add_argument("--profile-phase", default="throughput",
                        choices=["serial", "throughput", "storm", "approval", "memory"],
                        help="which phase --profile samples (default: throughput)")
    parser.add_argument("--budget-scale", type=float, default=None,
                        help="multiply every time budget (e.g. 10 to never cut short)")
    parser.add_argument("--audit", choices=["sqlite", "postgres"], default="sqlite",
                        help="audit store: SQLite under the state dir (default), or a "
                             "throwaway PostgreSQL cluster the bench starts (tests/pgserver.py) "
                             "with the worker role's least privilege")
    parser.add_argument("--ssf", choices=["on", "off"], default="on",
                        help="a Shared Signals push stream to a relying party the bench runs "
                             "(default on: every containment also emits a SET); off to "
                             "measure without one")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON here instead")
    parser.add_argument("--keep", action="store_true", help="keep the temp state dir")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else Sizes()
    scale = args.budget_scale or 1.0
    plan: dict[str, Any] = {
        "total": (QUICK_TOTAL if args.quick else TOTAL) * scale,
        "budgets": {k: v * scale for k, v in (QUICK_BUDGETS if args.quick else BUDGETS).items()},
        "reserved": {k: v * scale for k, v in
                     (QUICK_RESERVED if args.quick else RESERVED).items()},
        "profile": [p.strip() for p in args.profile.split(",") if p.strip()],
        "profile_phase": args.profile_phase,
        "ssf": args.ssf == "on",
    }
    unknown = set(plan["profile"]) - {"worker", "api", "mock-idp", "floor"}
    if unknown:
        parser.error(f"--profile: unknown process(es) {sorted(unknown)}; "
                     "one or more of worker, api, mock-idp, floor")
    sizes = Sizes(**{k: (getattr(args, k) if getattr(args, k) is not None else v)
                     for k, v in asdict(sizes).items()})

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = datetime.now(UTC)
    # Fresh identities: floor, evidence floor and Stanch samples alike (warm-up and serial
    # triples, every throughput run of both sides), the storm's and the approvals'.
    contained = (3 * (min(5, sizes.serial) + sizes.serial)
                 + 2 * sizes.rounds * sizes.concurrent
                 + sizes.storm_identities + sizes.approvals)
    log(f"bench: starting dev server, mock IdP ({contained} bench identities), worker, API …")
    t0 = time.perf_counter()
    pg = _start_postgres(log) if args.audit == "postgres" else None
    try:
        stack = stack_mod.start(contained=contained, waiting=sizes.waiting,
                                audit_dsn=pg[1] if pg else None)
    except BaseException:
        if pg:
            pg[0].stop()
        raise
    log(f"bench: up in {time.perf_counter() - t0:.1f}s (state {stack.state})")
    ok = False
    try:
        figures = asyncio.run(_measure(stack, sizes, plan, log))
        ok = True
    finally:
        stack.stop()
        if pg:
            pg[0].stop()
        if ok and not args.keep and not plan["profile"]:
            import shutil

            shutil.rmtree(stack.state, ignore_errors=True)
        elif not ok:
            log(f"bench: failed; logs kept in {stack.state / 'logs'}")
    result = {
        "started_at": started.isoformat(), "mode": "quick" if args.quick else "full",
        "audit": args.audit, "ssf": args.ssf,
        "sizes": asdict(sizes), "budgets_s": {k: figures[k].get("budget_s") for k in
                                              plan["budgets"]} | {"total": plan["total"]},
        "machine": _machine(),
        "wall_seconds": (datetime.now(UTC) - started).total_seconds(),
        "figures": figures, "checks": checks(figures),
    }
    path = args.json or RESULTS / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(render(result))
    if figures.get("profiles"):
        print()
        print(render_profiles(figures["profiles"]))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
