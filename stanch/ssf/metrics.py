"""SSF metrics: SETs queued and delivered, and what still waits per stream."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SSF_SETS_QUEUED = Counter("stanch_ssf_sets_queued_total", "SETs queued for receivers, by "
                          "event type", ["event_type"])
SSF_DELIVERIES = Counter("stanch_ssf_push_deliveries_total", "Push delivery attempts by "
                         "outcome (delivered, refused, retry)", ["outcome"])
SSF_UNDELIVERED = Gauge("stanch_ssf_undelivered", "SETs not yet delivered or acknowledged, "
                        "by stream and state (pending, failed, refused)", ["stream", "state"])
SSF_RECEIVED = Counter("stanch_ssf_sets_received_total", "SETs received, by outcome",
                       ["outcome"])
