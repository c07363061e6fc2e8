"""Prometheus metrics for the pool, in the default registry.

livekit's worker serves that registry on its metrics port (``PROMETHEUS_PORT``); with
the process executor, set ``PROMETHEUS_MULTIPROC_DIR`` so job processes' figures reach it.
Labels are resource and provider names from settings: a small, bounded set.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .metrics import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}

REQUESTS = Counter(
    "agent_pool_requests",
    "Calls made through the pool, by resource and outcome (success, failure, timeout).",
    ["resource", "outcome"],
)
STREAM_FAILURES = Counter(
    "agent_pool_stream_failures",
    "Responses that began fine and failed while streaming (counted in requests as successes).",
    ["resource"],
)
STALLS = Counter(
    "agent_pool_stalls",
    "Responses that missed their first-token deadline and were abandoned for the next provider.",
    ["resource"],
)
REJECTED = Counter(
    "agent_pool_rejected_calls",
    "Calls refused without a request because the resource's circuit breaker was open.",
    ["resource"],
)
DURATION = Histogram(
    "agent_pool_request_duration_seconds",
    "Time to response headers (time to first byte for streams), per resource.",
    ["resource"],
    buckets=_LATENCY_BUCKETS,
)
CONNECTIONS = Counter(
    "agent_pool_connections",
    "Requests by whether they opened a new connection or reused a pooled one.",
    ["resource", "kind"],
)
BREAKER_STATE = Gauge(
    "agent_pool_breaker_state",
    "Circuit breaker state per resource: 0 closed, 1 half-open, 2 open.",
    ["resource"],
    multiprocess_mode="livemax",
)
RETRIES = Counter("agent_pool_retries", "Retries made by the pool's own calls.", ["resource"])
RETRIES_DENIED = Counter(
    "agent_pool_retries_denied",
    "Retries refused by the retry budget during an outage.",
    ["resource"],
)


def observe_call(resource: str, outcome: Outcome, latency_s: float) -> None:
    REQUESTS.labels(resource, outcome).inc()
    DURATION.labels(resource).observe(latency_s)


def observe_breaker(resource: str, state: str) -> None:
    BREAKER_STATE.labels(resource).set(BREAKER_VALUES[state])
