"""Prometheus metrics for operators (prometheus-client), served at GET /metrics.

Credits here are observability figures (float is fine for a dashboard); the ledger stays the record.
With EDGE_WORKERS > 1 each worker has its own registry, so scrape each or run one worker.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

GENERATIONS = Counter(
    "fsg_generation_requests_total", "Metered generation calls by endpoint and outcome", ["endpoint", "outcome"]
)
LATENCY = Histogram(
    "fsg_generation_latency_seconds", "Whole metered call, key to settlement", ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TOKENS = Counter("fsg_tokens_total", "Tokens reported by Claude on successful calls", ["model", "direction"])
CREDITS_CHARGED = Counter("fsg_credits_charged_total", "Credits charged for successful calls", ["endpoint"])
CREDITS_ABSORBED = Counter(
    "fsg_credits_absorbed_total", "Provider cost above the hold, not charged to the user (the hold is the most a "
    "call may charge)", ["endpoint"])
BATCH_ITEMS = Histogram(
    "fsg_service_batch_items", "Calls carried per batch RPC (EDGE_BATCH_MAX)", ["call"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
AUTH_FAILURES = Counter("fsg_auth_failures_total", "Rejected API keys", ["reason"])


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
