"""Prometheus metrics of one gateway instance, in their own registry (no global state).

Each labelled metric is wrapped in a :class:`Family` that remembers its children, so that the
hot path looks a labelled child up in a dict instead of prometheus-client's ``labels()``
(a lock, validation and a tuple per call). Label values are bounded: experts, models the
gateway serves, statuses, error codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Sample

M = TypeVar("M", bound=MetricWrapperBase)


class Family(Generic[M]):
    """A labelled metric with its children cached by label values."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def collect(self) -> Iterable[Any]:
        return self.metric.collect()

    def samples(self) -> list[Sample]:
        return [s for m in self.metric.collect() for s in m.samples]


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Requests, attempts, latency, tokens, expert choices, errors, worker health."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Family(Counter(
            "coe_requests_total", "Chat completion requests answered",
            ["model", "expert", "status"], registry=r))
        self.latency = Family(Histogram(
            "coe_request_latency_seconds", "Request latency through the gateway (to the last "
            "byte)", ["expert", "stream"], buckets=LATENCY_BUCKETS, registry=r))
        self.routing_latency = Family(Histogram(
            "coe_routing_latency_seconds", "Router prediction + policy decision time",
            ["router"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r))
        self.image_features = Family(Histogram(
            "coe_image_features_seconds", "Image feature extraction before an image-aware "
            "router (decode + extractors; a cached image costs ~0)", ["router"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r))
        self.tokens = Family(Counter(
            "coe_tokens_total", "Tokens processed", ["expert", "kind"], registry=r))
        self.choices = Family(Counter(
            "coe_expert_choices_total", "Experts chosen by routers", ["router", "expert"],
            registry=r))
        self.attempts = Family(Counter(
            "coe_attempts_total", "Upstream attempts by expert and outcome (accepted, "
            "rejected, failed)", ["expert", "outcome"], registry=r))
        self.fallbacks = Family(Counter(
            "coe_fallbacks_total", "Requests moved to a fallback expert",
            ["from_expert", "to_expert"], registry=r))
        self.cascade = Family(Counter(
            "coe_cascade_steps_total", "Cascade checks by strategy, tier and outcome "
            "(accepted, escalated, skipped: the router was confident, voted: the last tier "
            "decided by vote)", ["strategy", "tier", "outcome"], registry=r))
        self.errors = Family(Counter(
            "coe_errors_total", "Errors returned to callers", ["type", "code"], registry=r))
        self.worker_restarts = Family(Counter(
            "coe_worker_restarts_total", "Worker restarts", ["expert"], registry=r))
        self.healthy_replicas = Family(Gauge(
            "coe_healthy_replicas", "Healthy replicas per expert", ["expert"], registry=r))
        self.spend = Family(Counter(
            "coe_spend_usd_total", "Estimated spend in USD", ["expert"], registry=r))

    def render(self) -> bytes:
        return generate_latest(self.registry)
