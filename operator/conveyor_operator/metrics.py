"""Prometheus metrics of the operator, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "conveyor_operator_decisions",
            "Scaling decisions, by queue and direction",
            ["queue", "direction"],
            registry=r,
        )
        self.desired = Gauge(
            "conveyor_operator_desired_replicas",
            "Replicas the last decision wanted",
            ["queue"],
            registry=r,
        )
        self.current = Gauge(
            "conveyor_operator_current_replicas",
            "Replicas the Deployment had",
            ["queue"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "conveyor_operator_poll_seconds",
            "Time to read one queue from Redis",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        self.alerting = Gauge(
            "conveyor_operator_queue_alerting",
            "1 while a queue alert of spec.alerts fires, by queue and alert type",
            ["queue", "type"],
            registry=r,
        )
        self.errors = Counter(
            "conveyor_operator_errors", "Failed polls and applies, by kind", ["kind"], registry=r
        )
