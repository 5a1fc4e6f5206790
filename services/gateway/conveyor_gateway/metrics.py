"""The gateway's Prometheus metrics, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ws_clients = Gauge(
            "conveyor_gateway_websocket_clients", "WebSocket clients connected", registry=r
        )
        self.live_messages = Counter(
            "conveyor_gateway_live_messages", "messages read from the live stream", registry=r
        )
        self.fanned_out = Counter(
            "conveyor_gateway_messages_sent",
            "messages handed to WebSocket clients (one per matching client)",
            registry=r,
        )
        self.slow_clients = Counter(
            "conveyor_gateway_slow_clients_dropped",
            "WebSocket clients dropped because their buffer overflowed (messages or bytes)",
            registry=r,
        )
        self.ws_refused = Counter(
            "conveyor_gateway_websocket_refused",
            "WebSocket clients refused, by reason: origin, capacity, token_in_url, auth",
            ["reason"],
            registry=r,
        )
        self.requests = Histogram(
            "conveyor_gateway_request_seconds",
            "REST request latency by route and status",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.redis_errors = Counter(
            "conveyor_gateway_redis_errors", "Redis errors seen by the gateway", registry=r
        )
