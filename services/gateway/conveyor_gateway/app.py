"""The gateway's ASGI app: REST for queues, machines and dead letters, the live WebSocket
stream, the dashboard, probes and metrics.

Every error is JSON ``{"error": "<what went wrong and what to do>", "status": <code>}``.
Who may do what: replay and delete need the API token always; reads (stats, machines,
alerts, dead letters - their payloads are plant data) need it with ``read_requires_token``;
``/healthz``, ``/readyz``, ``/metrics`` (probes and Prometheus), ``/openapi.json`` and the
dashboard's page and files stay open, as they hold no plant data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import cast

from conveyor_plant import PlantState
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from conveyor_gateway.config import GatewayConfig
from conveyor_gateway.history import StatsHistory
from conveyor_gateway.live import LiveHub
from conveyor_gateway.metrics import GatewayMetrics
from conveyor_gateway.openapi import openapi_document
from conveyor_gateway.security import SecurityHeaders, bearer_token, token_matches
from conveyor_gateway.stream import StreamGate, stream_endpoint
from reliable_queue import QueueClient, QueueUnavailable, UsageError
from reliable_queue.cancelling import cancel_and_wait
from reliable_queue.keys import validate_queue_name

log = logging.getLogger(__name__)

MAX_PAGE = 500
MAX_IDS = 10_000
MAX_MACHINE_ID = 256
MACHINES_LISTED = 1_000


class ApiError(HTTPException):
    """An error answered as JSON; ``detail`` says what to do."""


class _GatewayApp(Starlette):
    """Starlette with the security headers outside everything, the server error page too."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(
    client: QueueClient, plant: PlantState, config: GatewayConfig | None = None
) -> Starlette:
    """The gateway over the queues (``client``) and the plant's state (``plant``)."""
    cfg = config or GatewayConfig()
    metrics = GatewayMetrics()
    hub = LiveHub(
        plant.redis,
        buffer=cfg.client_buffer,
        buffer_bytes=cfg.client_buffer_bytes,
        metrics=metrics,
    )
    gate = StreamGate()
    history = StatsHistory(client, interval_s=cfg.sample_interval_s, keep_s=cfg.history_s)
    page = (files("conveyor_gateway") / "static" / "index.html").read_text()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(history.run())]
        try:
            yield
        finally:
            await cancel_and_wait(*tasks)

    # --- helpers -------------------------------------------------------------------------------

    def authorize(request: Request) -> None:
        if cfg.api_token is None:
            raise ApiError(
                403,
                "replay and delete are disabled: start the gateway with GATEWAY_API_TOKEN set, "
                "then send 'Authorization: Bearer <token>'",
            )
        if not token_matches(bearer_token(request.headers), cfg.api_token):
            raise ApiError(
                401,
                "missing or wrong token: send 'Authorization: Bearer <GATEWAY_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def authorize_read(request: Request) -> None:
        """Reads need the token when ``read_requires_token``; checked before anything else,
        so that an unauthenticated caller learns nothing (not even which queues exist)."""
        if cfg.read_requires_token and not token_matches(
            bearer_token(request.headers), cfg.api_token
        ):
            raise ApiError(
                401,
                "this gateway requires its API token for reads: send "
                "'Authorization: Bearer <GATEWAY_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(422, f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ApiError(422, f"{name}={value} is out of range: use {low} to {high}")
        return value

    async def known_queue(request: Request) -> str:
        queue = validate_queue_name(cast(str, request.path_params["queue"]).removeprefix("dead:"))
        known = await client.queues()
        if queue not in known:
            raise ApiError(
                404, f"no queue named {queue!r}; known queues: {', '.join(known) or 'none'}"
            )
        return queue

    async def ids_from_body(request: Request) -> list[str] | None:
        body = await request.body()
        if not body.strip():
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            raise ApiError(
                422, 'the body must be JSON: {"ids": ["<job id>", ...]} or empty'
            ) from None
        if not isinstance(doc, dict) or set(doc) - {"ids"}:
            raise ApiError(422, 'the body must be {"ids": [...]} (or empty for every dead letter)')
        ids = doc.get("ids")
        if ids is None:
            return None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(422, '"ids" must be a list of job id strings')
        if len(ids) > MAX_IDS:
            raise ApiError(422, f'"ids" has {len(ids)} entries; send at most {MAX_IDS} at a time')
        return ids

    def timed(
        route: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except HTTPException as exc:
                status = exc.status_code
                raise
            finally:
                metrics.requests.labels(route, str(status)).observe(time.perf_counter() - started)

        return endpoint

    # --- REST ----------------------------------------------------------------------------------

    async def stats(request: Request) -> Response:
        authorize_read(request)
        doc = await client.stats()
        for name, q in doc["queues"].items():
            tp = history.throughput(name, q)
            q["completed_last_minute"] = tp.completed
            q["enqueued_last_minute"] = tp.enqueued
            q["rate_per_s"] = round(tp.completed_per_s, 3)
            q["arrival_per_s"] = round(tp.enqueued_per_s, 3)
            q["rate_window_s"] = round(tp.window_s, 3)
        return JSONResponse(doc)

    async def stats_history(request: Request) -> Response:
        authorize_read(request)
        minutes = int_param(request, "minutes", 10, 1, max(1, int(cfg.history_s // 60)))
        return JSONResponse(
            {
                "interval_s": cfg.sample_interval_s,
                "queues": {q: history.series(q, minutes * 60) for q in history.queues()},
            }
        )

    async def machines(request: Request) -> Response:
        authorize_read(request)
        found, truncated = await plant.machine_ids(limit=MACHINES_LISTED)
        return JSONResponse({"machines": found, "truncated": truncated})

    async def machine(request: Request) -> Response:
        authorize_read(request)
        machine_id = cast(str, request.path_params["machine"])
        if not 0 < len(machine_id) <= MAX_MACHINE_ID:
            raise ApiError(422, f"a machine id has 1 to {MAX_MACHINE_ID} characters")
        state = await plant.machine_state(machine_id)
        if state is None:
            raise ApiError(
                404,
                f"nothing known of machine {machine_id!r}: no value from it within the cache "
                "TTL (WORKER_CACHE_TTL_S); check that it publishes to <machine>/realtime",
            )
        return JSONResponse(
            {
                "machine": machine_id,
                "values": state.values,
                "updated_ms": state.updated_ms,
                "config": state.config,
            }
        )

    async def alerts(request: Request) -> Response:
        authorize_read(request)
        limit = int_param(request, "limit", 50, 1, MAX_PAGE)
        return JSONResponse({"alerts": await plant.recent_alerts(limit=limit)})

    async def dead_letters(request: Request) -> Response:
        authorize_read(request)
        offset = int_param(request, "offset", 0, 0, 10**9)
        limit = int_param(request, "limit", 50, 1, MAX_PAGE)
        queue = await known_queue(request)
        letters = await client.dead_letters(queue, offset=offset, limit=limit)
        total = await client.dead_letter_count(queue)
        return JSONResponse(
            {
                "queue": queue,
                "total": total,
                "offset": offset,
                "limit": limit,
                "dead_letters": [d.to_dict() for d in letters],
            }
        )

    async def replay(request: Request) -> Response:
        authorize(request)
        queue = await known_queue(request)
        ids = await ids_from_body(request)
        replayed = await client.replay_dead_letters(queue, ids)
        log.info("replayed %d dead letters of %s through the gateway", replayed, queue)
        return JSONResponse({"queue": queue, "replayed": replayed})

    async def purge(request: Request) -> Response:
        authorize(request)
        queue = await known_queue(request)
        raw = request.query_params.get("ids")
        ids = [i for i in raw.split(",") if i] if raw else None
        purged = await client.purge_dead_letters(queue, ids)
        log.info("purged %d dead letters of %s through the gateway", purged, queue)
        return JSONResponse({"queue": queue, "purged": purged})

    async def dead_letters_or_purge(request: Request) -> Response:
        # One route for both methods, so that a 405 lists them all in its Allow header.
        return await (purge if request.method == "DELETE" else dead_letters)(request)

    # --- probes, metrics, documents ------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = {"redis": True, "live_stream": hub.subscribed}
        try:
            await client.ping()
        except QueueUnavailable:
            checks["redis"] = False
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(read_auth=cfg.read_requires_token))

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(page)

    # --- errors --------------------------------------------------------------------------------

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail
        if exc.status_code == 404 and not isinstance(exc, ApiError):
            detail = f"no such endpoint {request.url.path}: see /openapi.json"
        elif exc.status_code == 405 and not isinstance(exc, ApiError):
            detail = f"{request.method} is not allowed on {request.url.path}: see /openapi.json"
        return JSONResponse(
            {"error": detail, "status": exc.status_code},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        metrics.redis_errors.inc()
        return JSONResponse(
            {"error": f"{exc}; check that Redis runs and REDIS_URL points at it", "status": 503},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def usage(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc), "status": 400}, status_code=400)

    routes = [
        Route("/", dashboard),
        Route("/stats", timed("/stats", stats)),
        Route("/stats/history", timed("/stats/history", stats_history)),
        Route("/machines", timed("/machines", machines)),
        Route("/machines/{machine}", timed("/machines/{machine}", machine)),
        Route("/alerts", timed("/alerts", alerts)),
        Route(
            "/queues/{queue}/dead",
            timed("/queues/{queue}/dead", dead_letters_or_purge),
            methods=["GET", "DELETE"],
        ),
        Route(
            "/queues/{queue}/dead/replay",
            timed("/queues/{queue}/dead/replay", replay),
            methods=["POST"],
        ),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi),
        WebSocketRoute(
            "/ws",
            stream_endpoint(hub, metrics, cfg, gate),
        ),
        Mount("/static", StaticFiles(packages=[("conveyor_gateway", "static")]), name="static"),
    ]
    app = _GatewayApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_error,
            QueueUnavailable: unavailable,
            RedisConnectionError: unavailable,
            RedisTimeoutError: unavailable,
            UsageError: usage,
        },
    )
    app.state.hub = hub
    app.state.history = history
    app.state.metrics = metrics
    app.state.stream = gate
    return app
