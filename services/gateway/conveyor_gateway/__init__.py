"""The gateway: the live WebSocket stream, REST for queues, machines and dead letters, the
charts' trends and control charts from InfluxDB, the dashboard, probes and metrics, as one ASGI
app (Starlette)."""

from conveyor_gateway.app import create_app
from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.history import StatsHistory, Throughput
from conveyor_gateway.influx import InfluxSource
from conveyor_gateway.live import LiveHub, Subscription
from conveyor_gateway.openapi import openapi_document

__all__ = [
    "GatewayConfig",
    "InfluxSource",
    "LiveHub",
    "StatsHistory",
    "Subscription",
    "Throughput",
    "create_app",
    "openapi_document",
]
