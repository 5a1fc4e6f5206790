"""``conveyor gateway``: the dashboard, REST and the live WebSocket stream, served by uvicorn."""

from __future__ import annotations

import argparse
import logging

from conveyor_plant import PlantState

from conveyor.settings import (
    GatewaySettings,
    InfluxSettings,
    RedisSettings,
    SettingsError,
    load,
)
from conveyor.startup import wait_for_redis
from reliable_queue import QueueClient

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the dashboard, REST and the live stream (REDIS_*, GATEWAY_*, INFLUX_*)",
        description="Serves / (dashboard), /stats, /machines/{id}, /queues/{q}/dead (+ replay, "
        "delete with GATEWAY_API_TOKEN), /ws, /healthz, /readyz, /metrics and /openapi.json; "
        "with INFLUX_URL, the charts' /machines/{id}/series, /machines/{id}/changes and "
        "/spc/{machine}/{characteristic}. "
        "GATEWAY_READ_AUTH and GATEWAY_STREAM_AUTH make reads and /ws require the token too.",
    )
    p.add_argument("--host", default=None, help="address to bind (default $GATEWAY_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default $GATEWAY_PORT, 8000)")
    p.set_defaults(run=cmd_gateway)


async def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn
    from conveyor_gateway import GatewayConfig, InfluxSource, create_app

    settings = load(GatewaySettings)
    redis_settings = load(RedisSettings)
    influx_settings = load(InfluxSettings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        config = GatewayConfig(
            api_token=token,
            read_requires_token=settings.read_auth,
            stream_requires_token=settings.stream_auth,
            allowed_origins=settings.origins(),
            max_connections=settings.max_connections,
            client_buffer=settings.client_buffer,
            client_buffer_bytes=settings.client_buffer_bytes,
        )
    except ValueError as exc:  # what the settings could not check alone, e.g. an origin
        raise SettingsError(f"invalid gateway configuration: {exc}") from exc
    if token is None:
        log.info("GATEWAY_API_TOKEN is not set: replaying and deleting dead letters is off")
    if not settings.read_auth:
        log.warning("GATEWAY_READ_AUTH is off: anyone who reaches the gateway reads plant data")
    influx = None
    if influx_settings.url is None:
        log.info("INFLUX_URL is not set: the dashboard's trend and control charts are off")
    else:
        influx = InfluxSource(
            url=influx_settings.url,
            bucket=influx_settings.bucket,
            token=influx_settings.token.get_secret_value(),
            timeout_s=influx_settings.timeout_s,
        )
    url, cluster = redis_settings.effective_url(), redis_settings.cluster
    async with (
        QueueClient.from_url(url, cluster=cluster) as client,
        PlantState.from_url(url, cluster=cluster) as plant,
    ):
        await wait_for_redis(client, redis_settings.startup_wait_s)
        app = create_app(client, plant, config, influx)
        server_config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # our logging setup (JSON or text) stays in charge
            access_log=False,
            lifespan="on",
            ws_max_size=64 * 1024,
            # Compression is per client and per message: with many screens on one stream of
            # small JSON messages it costs more CPU than it saves bandwidth.
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(server_config)
        await server.serve()
        if not server.started:
            return 1
    return 0
