"""Prometheus metrics of the operator, in a registry of their own."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


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
        # The queue as the last poll read it: what dashboards and alert rules watch.
        self.depth = Gauge("conveyor_operator_queue_depth", "Pending jobs", ["queue"], registry=r)
        self.processing = Gauge(
            "conveyor_operator_queue_processing", "Jobs in flight", ["queue"], registry=r
        )
        self.oldest_age = Gauge(
            "conveyor_operator_queue_oldest_age_seconds",
            "Age of the oldest pending job",
            ["queue"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "conveyor_operator_queue_dead_letters", "Dead letters held", ["queue"], registry=r
        )
        self.drain_rate = Gauge(
            "conveyor_operator_queue_drain_rate",
            "Jobs finished (or dead-lettered) per second between the last two polls",
            ["queue"],
            registry=r,
        )
        self.arrival_rate = Gauge(
            "conveyor_operator_queue_arrival_rate",
            "Jobs enqueued per second between the last two polls",
            ["queue"],
            registry=r,
        )
        self.alerting = _Alerting()
        r.register(self.alerting)
        self.errors = Counter(
            "conveyor_operator_errors", "Failed polls and applies, by kind", ["kind"], registry=r
        )

    def forget(self, queue: str) -> None:
        """Drop a deleted MessageQueue's series, so no dashboard shows it frozen."""
        for gauge in (
            self.depth,
            self.processing,
            self.oldest_age,
            self.dead_letters,
            self.drain_rate,
            self.arrival_rate,
            self.desired,
            self.current,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(queue)
        self.alerting.forget(queue)


class _Alerting(Collector):
    """``conveyor_operator_queue_alerting{queue,type}``: 1 while a queue alert fires, 0 while
    it does not, and nothing once the last judgement is older than its bound: a standby of a
    highly available pair, paused by its leader, must not keep an old alert in Prometheus."""

    def __init__(self) -> None:
        self._queues: dict[str, tuple[float, float, dict[str, bool]]] = {}

    def judged(self, queue: str, states: dict[str, bool], *, fresh_for_s: float) -> None:
        """``states``: alert type -> firing, as judged now; exported for ``fresh_for_s``."""
        self._queues[queue] = (time.monotonic(), fresh_for_s, dict(states))

    def forget(self, queue: str) -> None:
        self._queues.pop(queue, None)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "conveyor_operator_queue_alerting",
            "1 while a queue alert of spec.alerts fires, by queue and alert type",
            labels=["queue", "type"],
        )
        now = time.monotonic()
        for queue, (at, fresh_for_s, states) in list(self._queues.items()):
            if now - at <= fresh_for_s:
                for kind, firing in states.items():
                    family.add_metric([queue, kind], 1.0 if firing else 0.0)
        yield family
