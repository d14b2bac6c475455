"""Prometheus counters for ingestion. Labels are bounded: unknown sources count as `unknown`."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS_RECEIVED = Counter(
    "stanch_alerts_received",
    "Alerts accepted (authenticated and normalized), by source.",
    ["source"],
)
ALERTS_REFUSED = Counter(
    "stanch_alerts_refused",
    "Webhook deliveries refused, by source and reason code.",
    ["source", "reason"],
)

# The brief's name for the pair; kept as an alias so either reads naturally.
IngestRefusal = ALERTS_REFUSED
