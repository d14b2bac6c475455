"""Smoke test of `python -m bench --quick` at tiny sizes: it runs on real processes end to
end and its JSON carries every figure (the targets are the bench's business, not ours)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--serial", "3", "--concurrent", "6",
         "--concurrency", "3", "--rounds", "2", "--storm-alerts", "24", "--storm-identities", "4",
         "--approvals", "2", "--waiting", "6", "--json", str(out),
         "--profile", "worker,api", "--profile-phase", "throughput"],
        cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "time-to-contain" in proc.stdout
    result = json.loads(out.read_text())
    f = result["figures"]
    for side in ("floor", "floor_complete", "floor_evidence", "contain", "api"):
        assert f["serial"][side]["n"] >= 1
        assert f["serial"][side]["p50_ms"] > 0 and f["serial"][side]["p99_ms"] > 0
    # The floor ends at its POST's write, before its workflow completes.
    assert f["serial"]["floor"]["p50_ms"] < f["serial"]["floor_complete"]["p50_ms"]
    tp = f["throughput"]
    assert len(tp["rounds"]) == 2
    for pair in tp["rounds"]:
        for kind in ("floor", "contain"):
            assert pair[kind]["throughput_per_s"] > 0 and pair[kind]["n"] >= 1
            assert pair[kind]["latency"]["p99_ms"] > 0
    assert tp["ratio_min"] <= tp["ratio_median"] <= tp["ratio_max"]
    for pair in tp["rounds"]:  # each run started on, and was counted until, a quiet stack
        assert len(pair["settled_s"]) == 3 and all(s >= 0.3 for s in pair["settled_s"])
    assert "floor + evidence" in proc.stdout
    for kind in ("floor", "contain"):  # what one of each cost, process by process
        each = tp[kind]["cpu_ms_each"]
        assert each["temporal"] > 0 and set(each) >= {"temporal", "worker", "api", "floor"}
    # A push stream was on: every contained identity was announced to the relying party.
    assert result["ssf"] == "on" and f["ssf_stream"]
    assert f["ssf"]["expected"] >= 1
    assert f["ssf"]["received_subjects"] == f["ssf"]["expected"], f["ssf"]
    assert f["ssf"]["lag"]["p50_ms"] > 0 and f["ssf"]["refused"] == 0
    storm = f["storm"]
    for key in ("workflows_created", "alerts_audited", "one_workflow_per_identity",
                "provider_writes", "alerts_per_s"):
        assert key in storm
    assert storm["api"]["p99_ms"] > 0
    assert storm["accepted"] == storm["alerts"] == 24
    assert f["approval"]["round_trip"]["p50_ms"] > 0
    assert f["approval"]["round_trip"]["p99_ms"] > 0
    assert f["memory"]["rss_mb"] > 0 and f["memory"]["containments"] == 6
    assert f["memory"]["rss_curve_mb"][0][0] == 0 and f["memory"]["parked_per_s"] > 0
    # py-spy sampled both processes during that phase (or says why it could not).
    for name in ("worker", "api"):
        prof = f["profiles"][name]
        assert "error" in prof or (prof["samples"] >= 0 and Path(prof["raw"]).exists()), prof
    assert "profile worker" in proc.stdout
    # A profiled run keeps its state dir for the raw stacks; this test has read them.
    state = re.search(r"\(state (/\S+)\)", proc.stderr)
    assert state and Path(state[1]).name.startswith("stanch-bench-"), proc.stderr[-2000:]
    shutil.rmtree(state[1], ignore_errors=True)
    assert set(result["checks"]) == {"ttc_p50_ratio", "ttc_p99_ratio", "throughput_ratio",
                                     "loaded_p99_ratio", "storm_one_workflow_per_identity",
                                     "storm_alerts_audited"}
    assert f["errors"]["count"] >= 0
    assert result["machine"]["cpus"] >= 1
    for phase in ("serial", "throughput", "memory"):
        assert set(f[phase]["cpu_seconds"]) >= {"temporal", "worker", "api", "bench-client"}


def test_profile_summary_reads_collapsed_stacks(tmp_path: Path) -> None:
    from bench.profile import summarize

    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (stanch/cli/__init__.py:21);run (x.py:1);apply (activities/containment.py:9) 30\n"
        "main (stanch/cli/__init__.py:21);select (selectors.py:468) 10\n")
    s = summarize(raw, seconds=1.0)
    assert s["samples"] == 40 and s["gil_busy"] == 0.4
    assert s["top_self"][0] == ("apply (activities/containment.py:9)", 0.75)
    # Entry frames (in every sample) are left out of the Stanch list.
    assert [f for f, _ in s["top_stanch_inclusive"]] == ["apply (activities/containment.py:9)"]


def test_timeline_puts_each_segment_on_one_clock() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.timeline", "--pairs", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {line[:26].strip(): line[26:].split() for line in proc.stdout.splitlines()[2:]}
    assert set(rows) >= {"sent -> started", "task started -> done", "activity -> intent",
                         "total (sent -> write)"}
    floor_total, _, evidence_total, _, stanch_total, _ = (
        float(x) for x in rows["total (sent -> write)"])
    assert floor_total > 0 and evidence_total > 0 and stanch_total > 0
    assert rows["activity -> intent"][0] == "-"  # the floor writes no intent
    # The evidence floor's record and Stanch's intent both come after their activity started.
    _, _, evidence_intent, _, stanch_intent, _ = rows["activity -> intent"]
    assert float(evidence_intent) > 0 and float(stanch_intent) > 0
