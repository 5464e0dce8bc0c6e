"""Prometheus metrics of one gateway instance, in their own registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Requests, latency, tokens, expert choices, errors, worker health."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coe_requests_total", "Chat completion requests answered",
                                ["model", "expert", "status"], registry=r)
        self.latency = Histogram("coe_request_latency_seconds",
                                 "Request latency through the gateway (to the last byte)",
                                 ["expert", "stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.routing_latency = Histogram("coe_routing_latency_seconds",
                                         "Router prediction + policy decision time",
                                         ["router"], buckets=(0.0005, 0.001, 0.0025, 0.005,
                                                              0.01, 0.025, 0.05, 0.1, 0.5),
                                         registry=r)
        self.tokens = Counter("coe_tokens_total", "Tokens processed", ["expert", "kind"],
                              registry=r)
        self.choices = Counter("coe_expert_choices_total", "Experts chosen by routers",
                               ["router", "expert"], registry=r)
        self.fallbacks = Counter("coe_fallbacks_total", "Requests moved to a fallback expert",
                                 ["from_expert", "to_expert"], registry=r)
        self.errors = Counter("coe_errors_total", "Errors returned to callers",
                              ["type", "code"], registry=r)
        self.worker_restarts = Counter("coe_worker_restarts_total", "Worker restarts",
                                       ["expert"], registry=r)
        self.healthy_replicas = Gauge("coe_healthy_replicas", "Healthy replicas per expert",
                                      ["expert"], registry=r)
        self.spend = Counter("coe_spend_usd_total", "Estimated spend in USD", ["expert"],
                             registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
