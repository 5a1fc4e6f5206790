"""Prometheus metrics of a worker process, in a registry of their own."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from reliable_queue import Worker


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.handler_seconds = Histogram(
            "conveyor_worker_handler_seconds",
            "Time to process one batch of jobs",
            ["queue"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.sink_seconds = Histogram(
            "conveyor_worker_sink_seconds",
            "Time of one write to a sink",
            ["sink"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "conveyor_worker_alerts_suppressed",
            "Repeated alerts folded into an earlier one",
            registry=r,
        )
        self.alerts_delivered = Counter(
            "conveyor_worker_alerts_delivered", "Alerts recorded and delivered", registry=r
        )
        self.alert_points_dropped = Counter(
            "conveyor_worker_alert_points_dropped",
            "Delivered alerts whose InfluxDB point (a dashboard annotation) was not written: "
            "InfluxDB away or refusing it",
            registry=r,
        )
        self.spc_violations = Counter(
            "conveyor_worker_spc_violations", "Western Electric rule violations raised", registry=r
        )
        self.points_rejected = Counter(
            "conveyor_worker_points_rejected",
            "Points InfluxDB refused as bad data; the jobs that carried them are dead-lettered",
            ["measurement"],
            registry=r,
        )
        self.concurrency = Gauge(
            "conveyor_worker_concurrency", "Current concurrency", ["queue"], registry=r
        )

    def watch(self, worker: Worker) -> None:
        """Export the worker's own counters and live concurrency."""
        self.registry.register(_WorkerCounters(worker))
        self.concurrency.labels(worker.queue).set_function(lambda: worker.concurrency)


class _WorkerCounters(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        c = self.worker.counters
        for name, value, text in (
            ("processed", c.processed, "Jobs acknowledged"),
            ("failed", c.failed, "Failed attempts"),
            ("retried", c.retried, "Failed attempts scheduled for a retry"),
            (
                "postponed",
                c.postponed,
                "Jobs an outage of a sink failed, tried again later without spending an attempt",
            ),
            ("dead_lettered", c.dead_lettered, "Jobs moved to dead letters"),
            ("leases_lost", c.leases_lost, "Jobs finished after their lease expired"),
            ("timed_out", c.timed_out, "Attempts cancelled for running past the queue's timeout"),
        ):
            family = CounterMetricFamily(f"conveyor_worker_{name}", text, labels=["queue"])
            family.add_metric([self.worker.queue], value)
            yield family
