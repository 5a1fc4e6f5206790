"""``conveyor ingest``: subscribe to MQTT and move every message into its queue."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import socket

from conveyor_ingestor import (
    DEFAULT_ROUTES,
    BrokerConfigError,
    IngestMetrics,
    IngestOptions,
    Ingestor,
    Route,
    RoutingError,
    RoutingTable,
    Subscriber,
    broker_config,
    max_packet_size,
)
from conveyor_ingestor.sparkplug.handling import SparkplugIngest, SparkplugOptions
from conveyor_ingestor.sparkplug.host import host_state
from conveyor_ingestor.sparkplug.owners import Membership
from conveyor_ingestor.sparkplug.sessions import SessionOptions
from conveyor_ingestor.sparkplug.store import SessionStore
from pydantic import ValidationError

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
from reliable_queue.cancelling import cancel_and_wait

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
            table = RoutingTable.from_file(settings.routes_file)
        elif settings.routes:
            table = RoutingTable.from_json(settings.routes, source="INGEST_ROUTES")
        else:
            table = RoutingTable(DEFAULT_ROUTES)
        if not settings.sparkplug:
            return table
        groups = [g.strip() for g in settings.sparkplug_groups.split(",") if g.strip()]
        filters = [f"spBv1.0/{group}/#" for group in groups] or ["spBv1.0/#"]
        sparkplug = [
            Route(filter=f, queue=settings.sparkplug_queue, kind="sparkplug") for f in filters
        ]
        return RoutingTable([*sparkplug, *table.routes])
    except (RoutingError, ValidationError) as exc:
        raise SettingsError(f"INGEST_SPARKPLUG_GROUPS or the routes: {exc}") from exc


def sparkplug_options(settings: IngestSettings) -> SparkplugOptions:
    return SparkplugOptions(
        alerts_queue=settings.sparkplug_alerts_queue,
        standby_max_bytes=settings.sparkplug_standby_bytes,
        sessions=SessionOptions(
            rebirth_interval_s=settings.sparkplug_rebirth_interval_s,
            max_parked=settings.sparkplug_max_parked,
            max_parked_bytes=settings.sparkplug_max_parked_bytes,
            max_parked_bytes_total=settings.sparkplug_max_parked_bytes_total,
            node_machine=settings.sparkplug_node_machine,
            device_machine=settings.sparkplug_device_machine,
        ),
    )


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
        # Also this replica's name among the replicas sharing the Sparkplug edge nodes.
        client_id = mqtt.client_id or f"conveyor-ingestor-{socket.gethostname()}"
        config = broker_config(
            mqtt.broker_url,
            client_id=client_id,
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
        presence = None
        # One replica (index 0) speaks for the host: while it is away, edge nodes buffer.
        if routes.sparkplug_filters and ingest.sparkplug_host_id and not ingest.replica_index:
            presence = functools.partial(host_state, ingest.sparkplug_host_id)
        subscriber = Subscriber(
            config, routes.filters, unshared=routes.sparkplug_filters, presence=presence
        )
    except BrokerConfigError as exc:
        raise SettingsError(str(exc)) from exc

    metrics = IngestMetrics()
    url, cluster = redis_settings.effective_url(), redis_settings.cluster
    sparkplug = None
    if routes.sparkplug_filters:
        store = SessionStore.from_url(url, cluster=cluster)
        sparkplug = SparkplugIngest(
            store,
            owners=Membership(store.redis, client_id),
            options=sparkplug_options(ingest),
            publish=subscriber.publish,
            metrics=metrics,
        )
    async with QueueClient.from_url(url, cluster=cluster) as client:
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
            sparkplug=sparkplug,
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
        announcing = None
        stopped = False
        try:
            await subscriber.start()
            log.info("ingesting %s from %s", ", ".join(routes.filters), mqtt.safe_broker_url)
            if sparkplug is not None:  # subscribed first: a replica counted in receives
                announcing = asyncio.create_task(sparkplug.owners.run())
            await ingestor.run()
            stopped = True
        finally:
            await subscriber.stop()
            await probes.stop()
            if announcing is not None:
                await cancel_and_wait(announcing)
            if sparkplug is not None:
                if stopped:  # its last batch is stored (if Redis let it be)
                    await sparkplug.leave()  # the others take its edge nodes at once
                await sparkplug.store.close()
    return 0
