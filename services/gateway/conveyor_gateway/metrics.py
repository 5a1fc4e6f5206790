"""The gateway's Prometheus metrics, in a registry of its own (served at ``/metrics``), and
the middleware that times the REST API's requests.

Requests are labelled by their route's path template (``/queues/{queue}/dead``), never by the
path asked for, so the label values are bounded by the route table: a request that matches no
timed route (a 404, a 405, a probe, a static file) is not timed at all.
"""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def path_template(path: str) -> str:
    """A route's path as the API documents it: ``/machines/{machine:anypath}`` is
    ``/machines/{machine}`` (Starlette's convertor dropped)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


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


class TimedRoute(Route):
    """A route whose requests :class:`RequestTimer` times: when it matches, it leaves itself in
    the scope (``scope["route"]``, as FastAPI's routes do), so that the timer labels the
    request with the template it was written with."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.FULL:
            child_scope["route"] = self
        return match, child_scope


class RequestTimer:
    """ASGI middleware: each request of a :class:`TimedRoute` observed in ``histogram`` by
    route and the status answered (500 when nothing was: an error the server's page answers).
    It sits outside the exception handlers, so their answers (401, 404, 503...) count too."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            if isinstance(route, TimedRoute):
                self.histogram.labels(path_template(route.path), str(status)).observe(
                    time.perf_counter() - started
                )
