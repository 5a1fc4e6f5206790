"""``conveyor ingest``: subscribe to MQTT and move every message into its queue."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket

from conveyor_ingestor import (
    DEFAULT_ROUTES,
    BrokerConfigError,
    IngestMetrics,
    IngestOptions,
    Ingestor,
    RoutingError,
    RoutingTable,
    Subscriber,
    broker_config,
    max_packet_size,
)

from conveyor.probes import ProbeServer
from conveyor.settings import (
    IngestSettings,
    MqttSettings,
    ProbeSettings,
    RedisSettings,
    SettingsError,
    load,
)
from reliable_queue import QueueClient

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ingest",
        help="subscribe to MQTT and enqueue every message (MQTT_*, INGEST_*, REDIS_* settings)",
    )
    p.add_argument("--print-routes", action="store_true", help="print the routing table and exit")
    p.set_defaults(run=cmd_ingest)


def routing_table(settings: IngestSettings) -> RoutingTable:
    try:
        if settings.routes_file is not None:
            return RoutingTable.from_file(settings.routes_file)
        if settings.routes:
            return RoutingTable.from_json(settings.routes, source="INGEST_ROUTES")
    except RoutingError as exc:
        raise SettingsError(str(exc)) from exc
    return RoutingTable(DEFAULT_ROUTES)


async def cmd_ingest(args: argparse.Namespace) -> int:
    ingest = load(IngestSettings)
    routes = routing_table(ingest)
    if args.print_routes:
        for r in routes.routes:
            priority = "the queue's priority" if r.priority is None else f"priority {r.priority}"
            print(f"{r.filter:30} -> {r.queue} ({priority}, {r.kind})")
        return 0
    mqtt = load(MqttSettings)
    redis_settings = load(RedisSettings)
    probes_at = load(ProbeSettings)
    try:
        config = broker_config(
            mqtt.broker_url,
            client_id=mqtt.client_id or f"conveyor-ingestor-{socket.gethostname()}",
            username=mqtt.username,
            password=mqtt.secret(),
            ca_file=str(mqtt.ca_file) if mqtt.ca_file else None,
            cert_file=str(mqtt.cert_file) if mqtt.cert_file else None,
            key_file=str(mqtt.key_file) if mqtt.key_file else None,
            protocol=mqtt.protocol,
            keepalive=mqtt.keepalive,
            session_expiry_s=mqtt.session_expiry_s,
            receive_maximum=mqtt.receive_maximum,
            share_group=mqtt.share_group,
            max_packet_size=max_packet_size(ingest.max_payload_bytes),
            inbox_max_messages=ingest.inbox_max_messages,
            inbox_max_bytes=ingest.inbox_max_bytes,
        )
        subscriber = Subscriber(config, routes.filters)
    except BrokerConfigError as exc:
        raise SettingsError(str(exc)) from exc

    metrics = IngestMetrics()
    async with QueueClient.from_url(
        redis_settings.effective_url(), cluster=redis_settings.cluster
    ) as client:
        ingestor = Ingestor(
            client=client,
            subscriber=subscriber,
            routes=routes,
            options=IngestOptions(
                batch_size=ingest.batch_size,
                flush_interval=ingest.flush_ms / 1000,
                max_payload_bytes=ingest.max_payload_bytes,
                dead_max_count=ingest.dead_max_count,
                dead_max_bytes=ingest.dead_max_bytes,
            ),
            metrics=metrics,
        )
        metrics.broker_reconnects.set_function(lambda: subscriber.reconnects)
        metrics.connected.labels("broker").set_function(lambda: int(subscriber.connected))
        metrics.connected.labels("redis").set_function(lambda: int(ingestor.redis_ok))
        probes = ProbeServer(
            registry=metrics.registry,
            ready=lambda: {"broker": subscriber.subscribed, "redis": ingestor.redis_ok},
        )
        await probes.start(probes_at.host, probes_at.port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ingestor.stop)
        await subscriber.start()
        log.info("ingesting %s from %s", ", ".join(routes.filters), mqtt.safe_broker_url)
        try:
            await ingestor.run()
        finally:
            await subscriber.stop()
            await probes.stop()
    return 0
