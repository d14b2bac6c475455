"""The sample Grafana dashboard only names series Stanch exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import stanch.ingest.metrics
import stanch.metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "stanch.json"


def test_dashboard_names_only_exported_series() -> None:
    assert stanch.ingest.metrics.ALERTS_RECEIVED is not None
    exported = {s.name for m in REGISTRY.collect() for s in m.samples}
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    named = {n for e in exprs for n in re.findall(r"\b(stanch_[a-z_]+)", e)}
    assert named, exprs
    families = {m.name for m in REGISTRY.collect()}
    unknown = [n for n in named
               if n not in exported and re.sub(r"_(total|bucket|count|sum)$", "", n)
               not in families]
    assert not unknown, unknown
    assert {"stanch_time_to_contain_seconds_bucket", "stanch_containments_open",
            "stanch_provider_errors_total", "stanch_alerts_refused_total"} <= named
