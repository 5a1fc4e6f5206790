"""Prometheus metrics of the ingestor, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("conveyor_ingest_received", "MQTT messages received", registry=r)
        self.enqueued = Counter(
            "conveyor_ingest_enqueued", "Jobs enqueued, by queue", ["queue"], registry=r
        )
        self.duplicates = Counter(
            "conveyor_ingest_duplicates", "Redelivered messages already queued", registry=r
        )
        self.rejected = Counter(
            "conveyor_ingest_rejected",
            "Messages sent to dead:ingest, by reason",
            ["reason"],
            registry=r,
        )
        self.unrouted = Counter("conveyor_ingest_unrouted", "Messages no route matched", registry=r)
        self.dead_evicted = Counter(
            "conveyor_ingest_dead_evicted",
            "Oldest letters evicted from dead:ingest to keep it within its count and byte caps",
            registry=r,
        )
        self.inbox_dropped = Counter(
            "conveyor_ingest_inbox_dropped",
            "QoS 0 messages dropped because the inbox was at its bound (Redis slow or away)",
            registry=r,
        )
        self.batch_size = Histogram(
            "conveyor_ingest_batch_size",
            "Messages per Redis round of enqueues",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.enqueue_seconds = Histogram(
            "conveyor_ingest_enqueue_seconds",
            "Time to enqueue one batch in Redis, retries included",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=r,
        )
        self.redis_errors = Counter(
            "conveyor_ingest_redis_errors", "Failed attempts to reach Redis", registry=r
        )
        self.broker_reconnects = Gauge(
            "conveyor_ingest_broker_reconnects", "Reconnections to the MQTT broker", registry=r
        )
        self.sparkplug = Counter(
            "conveyor_ingest_sparkplug_events",
            "Sparkplug B session events: rebirth_requested, parked, resolved_after_rebirth, "
            "stale_death; edge nodes changing hands: kept_for_other_replica (a message of a "
            "node another replica handles), taken, replayed (kept messages handled on taking a "
            "node), taken_without_last (the holder's last message was not among those kept), "
            "taken_away (another replica took a node this one held), let_go (on a clean stop, "
            "or a node idle beyond the sessions kept in memory), standby_dropped (kept "
            "messages dropped over INGEST_SPARKPLUG_STANDBY_BYTES)",
            ["event"],
            registry=r,
        )
        self.sparkplug_edge_nodes = Gauge(
            "conveyor_ingest_sparkplug_edge_nodes",
            "Sparkplug B edge nodes this replica handles (holds)",
            registry=r,
        )
        self.connected = Gauge(
            "conveyor_ingest_connected", "1 when connected, by peer", ["peer"], registry=r
        )
