"""What the gateway says about itself, open to anyone who reaches it (none of it is plant
data): liveness and readiness for Kubernetes' probes, Prometheus' metrics, the OpenAPI
document and the dashboard's page."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from conveyor_gateway.models import Health, Readiness, ReadinessChecks, json_response
from conveyor_gateway.state import state_of
from reliable_queue import QueueUnavailable


async def healthz(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def readyz(request: Request) -> Response:
    """Ready: Redis answers and the live stream is subscribed."""
    gateway = state_of(request)
    live_stream = gateway.hub.subscribed
    redis = True
    try:
        await gateway.client.ping()
    except QueueUnavailable:
        redis = False
    checks = ReadinessChecks(redis=redis, live_stream=live_stream)
    ok = checks.redis and checks.live_stream
    return json_response(Readiness(ready=ok, checks=checks), status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    registry = state_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(state_of(request).openapi)


async def dashboard(request: Request) -> Response:
    return HTMLResponse(state_of(request).page)
