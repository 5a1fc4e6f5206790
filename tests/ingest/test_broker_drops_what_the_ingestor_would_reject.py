"""The ingestor announces an MQTT 5 Maximum Packet Size (its payload limit plus header room):
the broker never sends it a larger message. What a user sees: such a message is in no queue and
not in ``dead:ingest`` (the ingestor never had it; the broker dropped it for this client as if
delivered, so it is not redelivered after a restart), and the broker's log says
``Dropping too large outgoing PUBLISH for <client id>``. A payload over the limit but within
the header room still reaches the ingestor and is dead-lettered as ``oversized``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from conveyor_ingestor import (
    DEFAULT_ROUTES,
    PACKET_HEADER_ROOM,
    IngestOptions,
    Ingestor,
    RoutingTable,
    Subscriber,
    broker_config,
    max_packet_size,
)

from reliable_queue import QueueClient
from tests.helpers import eventually
from tests.mqtt import publish
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

LIMIT = 4096
TS = 1_700_000_000_000


def _reading(n: int) -> tuple[str, bytes]:
    return ("m1/realtime", json.dumps({"temp": n, "timestamp": TS + n}).encode())


@asynccontextmanager
async def _ingestor(
    mosquitto: MosquittoServer, client: QueueClient, client_id: str
) -> AsyncIterator[Ingestor]:
    routes = RoutingTable(DEFAULT_ROUTES)
    config = broker_config(
        mosquitto.url, client_id=client_id, max_packet_size=max_packet_size(LIMIT)
    )
    subscriber = Subscriber(config, routes.filters)
    ingestor = Ingestor(
        client=client,
        subscriber=subscriber,
        routes=routes,
        options=IngestOptions(max_payload_bytes=LIMIT),
    )
    await subscriber.start()
    task = asyncio.create_task(ingestor.run())
    try:
        await eventually(lambda: ingestor.ready, what="ingestor subscribed and ready")
        yield ingestor
    finally:
        ingestor.stop()
        await task
        await subscriber.stop()


async def test_too_large_is_dropped_by_the_broker_and_never_redelivered(
    mosquitto: MosquittoServer, client: QueueClient
) -> None:
    client_id = f"ingest-packet-{uuid.uuid4().hex[:8]}"
    huge = ("m1/realtime", b'{"v": "' + b"x" * (LIMIT + PACKET_HEADER_ROOM) + b'"}')
    just_over = ("m1/realtime", b'{"v": "' + b"x" * LIMIT + b'"}')

    async with _ingestor(mosquitto, client, client_id) as ingestor:
        sent = [huge, just_over, _reading(1)]
        assert await asyncio.to_thread(publish, mosquitto.port, sent) == len(sent)

        async def both_handled() -> bool:
            return (await client.queue_stats("mqtt_realtime")).pending == 1 and (
                await client.dead_letter_count("ingest") == 1
            )

        await eventually(both_handled, what="the reading queued and the just-over one dead")
        [letter] = await client.dead_letters("ingest")
        assert letter.reason == "oversized"
        assert letter.data["payload_bytes"] == len(just_over[1])
        dropped = f"Dropping too large outgoing PUBLISH for {client_id}"
        await eventually(lambda: dropped in _broker_log(mosquitto), what="broker's log")
        assert ingestor.metrics.received._value.get() == 2

    # A new connection of the same persistent session gets nothing of it back.
    async with _ingestor(mosquitto, client, client_id) as ingestor:
        assert await asyncio.to_thread(publish, mosquitto.port, [_reading(2)]) == 1

        async def second_queued() -> bool:
            return (await client.queue_stats("mqtt_realtime")).pending == 2

        await eventually(second_queued, what="the reading published after the restart")
        assert ingestor.metrics.received._value.get() == 1
        assert await client.dead_letter_count("ingest") == 1
        assert _broker_log(mosquitto).count(dropped) == 1


def _broker_log(mosquitto: MosquittoServer) -> str:
    return (mosquitto.workdir / "mosquitto.log").read_text(errors="replace")
