"""``conveyor gateway``: the dashboard, REST and the live WebSocket stream, served by uvicorn."""

from __future__ import annotations

import argparse
import logging

from conveyor.settings import GatewaySettings, RedisSettings, load
from conveyor.startup import wait_for_redis
from reliable_queue import QueueClient

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the dashboard, REST and the live stream (REDIS_*, GATEWAY_*)",
        description="Serves / (dashboard), /stats, /machines/{id}, /queues/{q}/dead (+ replay, "
        "delete with GATEWAY_API_TOKEN), /ws, /healthz, /readyz, /metrics and /openapi.json.",
    )
    p.add_argument("--host", default=None, help="address to bind (default $GATEWAY_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default $GATEWAY_PORT, 8000)")
    p.set_defaults(run=cmd_gateway)


async def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn
    from conveyor_gateway import GatewayConfig, create_app

    settings = load(GatewaySettings)
    redis_settings = load(RedisSettings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    async with QueueClient.from_url(
        redis_settings.effective_url(), cluster=redis_settings.cluster
    ) as client:
        await wait_for_redis(client, redis_settings.startup_wait_s)
        token = settings.api_token.get_secret_value() if settings.api_token else None
        if token is None:
            log.info("GATEWAY_API_TOKEN is not set: replaying and deleting dead letters is off")
        app = create_app(
            client,
            GatewayConfig(
                api_token=token,
                stream_requires_token=settings.stream_auth,
                client_buffer=settings.client_buffer,
            ),
        )
        config = uvicorn.Config(
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
        server = uvicorn.Server(config)
        await server.serve()
        if not server.started:
            return 1
    return 0
