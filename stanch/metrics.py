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
BODIES_REFUSED = Counter(
    "stanch_request_bodies_refused_total",
    "Request bodies refused before parsing (413 too large, 408 too slow), by status",
    ["status"],
)
REFUSALS = Counter(
    "stanch_requests_refused_total",
    "Authenticated requests refused on state-changing endpoints, by audit type and refusal",
    ["type", "refusal"],
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
CONTAINMENT_ACTIONS = Counter(
    "stanch_containment_actions_total",
    "Containment steps finished by the worker, by action, ladder rung and status "
    "(applied, already, failed)",
    ["action", "rung", "status"],
)
CONTAINMENTS_OPEN = Gauge(
    "stanch_containments_open",
    "Running containments by highest applied rung and status (from Temporal visibility, "
    "refreshed when the API is scraped)",
    ["rung", "status"],
)


def serve_worker_metrics(host: str, port: int) -> bool:
    """Serve this process's registry on ``host:port/metrics``; False when it cannot bind.

    A metrics port someone else holds must not stop containment, so a failure to bind is
    logged by the caller and the worker runs on."""
    from prometheus_client import start_http_server

    if port == 0:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError:
        return False
    return True
