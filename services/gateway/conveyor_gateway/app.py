"""The gateway's ASGI app, put together: the routes of the operation table
(:mod:`conveyor_gateway.routes`) beside the live stream and the dashboard's files, the
gateway's parts on ``app.state`` for the endpoints (:mod:`conveyor_gateway.state`), the
background work of its lifespan, the request timer, the error handlers and the security
headers outside everything.

The endpoints live by what they serve: :mod:`~conveyor_gateway.queues`,
:mod:`~conveyor_gateway.machines`, :mod:`~conveyor_gateway.probes` and
:mod:`~conveyor_gateway.stream` (``/ws``). Who may call what is in
:mod:`~conveyor_gateway.access`; every error is JSON ``{"error": str, "status": int}``
(:mod:`~conveyor_gateway.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files

from conveyor_plant import PlantState
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.errors import EXCEPTION_HANDLERS
from conveyor_gateway.history import StatsHistory
from conveyor_gateway.influx import InfluxReader, InfluxSource
from conveyor_gateway.live import LiveHub
from conveyor_gateway.metrics import GatewayMetrics, RequestTimer
from conveyor_gateway.openapi import openapi_document
from conveyor_gateway.routes import http_routes
from conveyor_gateway.security import SecurityHeaders
from conveyor_gateway.state import GatewayState
from conveyor_gateway.stream import StreamGate, stream
from reliable_queue import QueueClient
from reliable_queue.cancelling import cancel_and_wait


class _GatewayApp(Starlette):
    """Starlette with the security headers outside everything, the server error page too."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """While the app serves: the live stream's subscription and the stats sampler."""
    gateway = app.state.gateway
    assert isinstance(gateway, GatewayState)
    tasks = [asyncio.create_task(gateway.hub.run()), asyncio.create_task(gateway.history.run())]
    try:
        yield
    finally:
        await cancel_and_wait(*tasks)
        if gateway.influx is not None:
            await gateway.influx.close()


def create_app(
    client: QueueClient,
    plant: PlantState,
    config: GatewayConfig | None = None,
    influx: InfluxSource | None = None,
) -> Starlette:
    """The gateway over the queues (``client``), the plant's state (``plant``) and, for the
    charts, the points in InfluxDB (``influx``; None: the charts answer 503)."""
    cfg = config or GatewayConfig()
    metrics = GatewayMetrics()
    gateway = GatewayState(
        client=client,
        plant=plant,
        config=cfg,
        metrics=metrics,
        hub=LiveHub(
            plant.redis,
            buffer=cfg.client_buffer,
            buffer_bytes=cfg.client_buffer_bytes,
            metrics=metrics,
        ),
        history=StatsHistory(client, interval_s=cfg.sample_interval_s, keep_s=cfg.history_s),
        gate=StreamGate(),
        page=(files("conveyor_gateway") / "static" / "index.html").read_text(),
        openapi=openapi_document(cfg),
        influx=InfluxReader(influx) if influx is not None else None,
    )

    routes: list[BaseRoute] = [
        *http_routes(),
        WebSocketRoute("/ws", stream),
        Mount("/static", StaticFiles(packages=[("conveyor_gateway", "static")]), name="static"),
    ]
    app = _GatewayApp(
        routes=routes,
        middleware=[Middleware(RequestTimer, histogram=metrics.requests)],
        lifespan=_lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.gateway = gateway
    return app
