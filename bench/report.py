"""Targets, PASS/MISS, and the one table ``python -m bench`` prints."""

from __future__ import annotations

import math
from typing import Any

# (figure, limit, direction): the targets.
# Every floor figure ends at the same event as Stanch's: the mock IdP's change-log `at` of
# the floor activity's POST, on the same clock (the floor's completion is shown beside it).
TTC_P50_MAX = 1.0     # x floor p50, serial, to the write
TTC_P99_MAX = 1.0     # x floor p99, serial, to the write
THROUGHPUT_MIN = 0.9  # x floor workflows/s, median of the interleaved pairs
LOADED_P99_MAX = 1.5  # time-to-contain p99 under load, x the floor's to-write p99 alike


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def checks(f: dict[str, Any]) -> dict[str, Any]:
    serial, storm = f["serial"], f["storm"]
    p50 = _ratio(serial["contain"]["p50_ms"], serial["floor"]["p50_ms"])
    p99 = _ratio(serial["contain"]["p99_ms"], serial["floor"]["p99_ms"])
    tput = f["throughput"]["ratio_median"]
    loaded = f["throughput"]["p99_ratio_median"]
    return {
        "ttc_p50_ratio": {"value": p50, "target": f"<= {TTC_P50_MAX}",
                          "pass": p50 <= TTC_P50_MAX},
        "ttc_p99_ratio": {"value": p99, "target": f"<= {TTC_P99_MAX}",
                          "pass": p99 <= TTC_P99_MAX},
        "throughput_ratio": {"value": tput, "target": f">= {THROUGHPUT_MIN}",
                             "pass": tput >= THROUGHPUT_MIN},
        "loaded_p99_ratio": {"value": loaded, "target": f"<= {LOADED_P99_MAX}",
                             "pass": loaded <= LOADED_P99_MAX},
        "storm_one_workflow_per_identity": {
            "value": storm["one_workflow_per_identity"], "target": "true",
            "pass": bool(storm["one_workflow_per_identity"])},
        "storm_alerts_audited": {
            "value": storm["alerts_audited"], "target": f"== {storm['alerts']}",
            "pass": storm["alerts_audited"] == storm["alerts"]},
    }


def _ms(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:,.0f} ms"


def _evidence_rows(se: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The evidence floor (read before-state, durable record, POST; no Stanch code) and
    time-to-contain against it: shown, no target (the targets use the bare floor)."""
    ev = se.get("floor_evidence")
    if not ev or not ev.get("n"):
        return []
    p50 = _ratio(se["contain"]["p50_ms"], ev["p50_ms"])
    p99 = _ratio(se["contain"]["p99_ms"], ev["p99_ms"])
    return [(f"  floor + evidence (GET before-state, durable record, POST), p50 / p99 "
             f"(n={ev['n']})",
             f"{_ms(ev['p50_ms'])} / {_ms(ev['p99_ms'])} "
             f"(time-to-contain {p50:.2f}x / {p99:.2f}x it)", "", "")]


def render(result: dict[str, Any]) -> str:
    f, c, s = result["figures"], result["checks"], result["sizes"]
    se, tp = f["serial"], f["throughput"]
    ft, ct = tp["floor"], tp["contain"]
    spread = f"{tp['ratio_min']:.2f}-{tp['ratio_max']:.2f}x over {len(tp['rounds'])} pairs"
    st, ap, mem = f["storm"], f["approval"], f["memory"]
    conc = s["concurrency"]

    def verdict(key: str) -> str:
        return "PASS" if c[key]["pass"] else "MISS"

    def of(done: int, planned: int) -> str:
        return f"{done:,}" if done >= planned else f"{done:,} of {planned:,} (time budget)"

    rows: list[tuple[str, str, str, str]] = [
        (f"floor: workflow + 1 activity, start -> its POST's IdP write, serial p50 "
         f"(n={se['floor']['n']})", _ms(se["floor"]["p50_ms"]), "", ""),
        ("floor: serial p99 (to the write)", _ms(se["floor"]["p99_ms"]), "", ""),
        ("  floor: start -> workflow completed, serial p50 / p99",
         f"{_ms(se['floor_complete']['p50_ms'])} / {_ms(se['floor_complete']['p99_ms'])}",
         "", ""),
        *_evidence_rows(se),
        (f"floor: throughput @{conc} concurrent, median pair (n={ft['n']})",
         f"{ft['throughput_per_s']:.1f} wf/s", "", ""),
        (f"  floor @{conc} concurrent, to the write p50 / p99",
         f"{_ms(ft['latency']['p50_ms'])} / {_ms(ft['latency']['p99_ms'])}", "", ""),
        (f"time-to-contain (POST sent -> 1st IdP write), serial p50 (n={se['contain']['n']})",
         f"{_ms(se['contain']['p50_ms'])} ({c['ttc_p50_ratio']['value']:.2f}x floor)",
         f"<= {TTC_P50_MAX}x floor", verdict("ttc_p50_ratio")),
        ("time-to-contain, serial p99",
         f"{_ms(se['contain']['p99_ms'])} ({c['ttc_p99_ratio']['value']:.2f}x floor)",
         f"<= {TTC_P99_MAX}x floor", verdict("ttc_p99_ratio")),
        ("  webhook answered (202), serial p50 / p99",
         f"{_ms(se['api']['p50_ms'])} / {_ms(se['api']['p99_ms'])}", "", ""),
        (f"alerts contained/s end to end @{conc} concurrent, median pair (n={ct['n']})",
         f"{ct['throughput_per_s']:.1f}/s ({c['throughput_ratio']['value']:.2f}x floor; "
         f"{spread})", f">= {THROUGHPUT_MIN}x floor", verdict("throughput_ratio")),
        (f"time-to-contain @{conc} concurrent p50 / p99",
         f"{_ms(ct['latency']['p50_ms'])} / {_ms(ct['latency']['p99_ms'])} "
         f"(p99 {c['loaded_p99_ratio']['value']:.2f}x floor's to-write p99)",
         f"<= {LOADED_P99_MAX}x floor", verdict("loaded_p99_ratio")),
        (f"storm: alerts sent over {st['identities']} identities @{conc} concurrent",
         f"{of(st['alerts'], st['alerts_planned'])}; {st['alerts_per_s']:.0f}/s; "
         f"HTTP {st['statuses']}", "", ""),
        ("storm: workflows created (Temporal visibility)",
         f"{st['workflows_created']} ({st['workflow_runs']} runs)", "", ""),
        ("storm: exactly one workflow per identity",
         str(st["one_workflow_per_identity"]).lower(), "true",
         verdict("storm_one_workflow_per_identity")),
        ("storm: alert.received records in the audit store",
         f"{st['alerts_audited']:,}", f"= {st['alerts']:,}", verdict("storm_alerts_audited")),
        ("storm: provider writes (identities written exactly once)",
         f"{st['provider_writes']} ({st['identities_written_once']})", "", ""),
        ("storm: API p50 / p99 during the storm",
         f"{_ms(st['api']['p50_ms'])} / {_ms(st['api']['p99_ms'])}", "", ""),
        (f"approval round trip (decision POST -> IdP write) p50 (n={ap['round_trip']['n']})",
         _ms(ap["round_trip"]["p50_ms"]), "", ""),
        ("approval round trip p99", _ms(ap["round_trip"]["p99_ms"]), "", ""),
        (f"worker RSS, {of(mem['waiting'], mem['planned'])} containments awaiting approval",
         f"{mem['rss_mb']:.0f} MB (before {mem['rss_before_mb']:.0f} MB, peak "
         f"{mem['rss_peak_mb']:.0f} MB; parked {mem['parked_per_s']:.0f}/s)", "", ""),
    ]
    ssf = f.get("ssf")
    if ssf is not None:
        rows.append((
            "SSF: containments announced to the bench's push stream (SET received)",
            f"{ssf['received_subjects']:,} of {ssf['expected']:,} "
            f"({ssf['sets_received']:,} SETs)", f"= {ssf['expected']:,}",
            "PASS" if ssf["received_subjects"] == ssf["expected"] else "MISS"))
        rows.append(("  SSF: SET received after the IdP write, p50 / p99",
                     f"{_ms(ssf['lag']['p50_ms'])} / {_ms(ssf['lag']['p99_ms'])}", "", ""))
    each_f, each_c = ft.get("cpu_ms_each"), ct.get("cpu_ms_each")
    if each_f and each_c:  # what one of each cost, right under the throughput figures
        def cost(each: dict[str, float]) -> str:
            return f"{sum(each.values()):.0f} ms (" + ", ".join(
                f"{k} {v:.0f}" for k, v in each.items() if v >= 0.5) + ")"
        at = next(i for i, r in enumerate(rows) if r[0].startswith("time-to-contain @")) + 1
        rows[at:at] = [
            ("  CPU per floor workflow @50, median pair, by process", cost(each_f), "", ""),
            ("  CPU per containment @50, median pair, by process", cost(each_c), "", "")]
    err = f["errors"]
    rows.append(("alerts not contained (503 / no write within 60 s)",
                 f"{err['count']}" + (f": {err['first'][0][:70]}" if err["count"] else ""),
                 "0", "PASS" if err["count"] == 0 else "MISS"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("figure", "value", "target", "")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    m = result["machine"]
    out.append(line)
    out.append(f"{result['mode']} run, audit in {result.get('audit', 'sqlite')}, "
               f"SSF stream {result.get('ssf', 'off')}, "
               f"{result['wall_seconds']:.0f}s wall; "
               f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, load at start "
               f"{m['load_avg_at_start'][0]:.2f}; CPU seconds by process: "
               + ", ".join(f"{k} {v}" for k, v in f["cpu_seconds"].items()))
    return "\n".join(out)
