"""Prometheus metrics shared by the API and the worker (each serves its own registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVIDER_CALLS = Counter(
    "stanch_provider_calls_total", "Provider calls by provider and action",
    ["provider", "action"],
)
PROVIDER_ERRORS = Counter(
    "stanch_provider_errors_total", "Provider errors by provider, action and error type",
    ["provider", "action", "error"],
)
CONTAINMENTS = Counter(
    "stanch_containments_total", "Alerts dispatched to containments, by outcome",
    ["outcome"],
)
DECISIONS = Counter(
    "stanch_decisions_total", "Approval decisions by verdict and outcome",
    ["verdict", "outcome"],
)
APPROVALS_PENDING = Gauge(
    "stanch_approvals_pending", "Steps waiting for approval (as last seen by the API)",
)
APPROVAL_OLDEST_AGE = Gauge(
    "stanch_approval_oldest_age_seconds", "Age of the oldest pending approval seen by the API",
)
TIME_TO_CONTAIN = Histogram(
    "stanch_time_to_contain_seconds", "Alert received → first containment action applied",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
