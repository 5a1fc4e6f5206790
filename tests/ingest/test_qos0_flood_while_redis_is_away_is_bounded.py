"""While Redis is away the ingestor holds what it received. QoS 1 deliveries are bounded by the
receive window; QoS 0 ones are not, so beyond the inbox bound they are dropped (at most once
allows it), counted in ``conveyor_ingest_inbox_dropped`` and logged once per interval. QoS 1
messages are never dropped, and everything kept is enqueued once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from conveyor_ingestor import (
    DEFAULT_ROUTES,
    IngestOptions,
    Ingestor,
    RoutingTable,
    Subscriber,
    broker_config,
)
from paho.mqtt.client import MQTTMessage

from reliable_queue import QueueClient, QueueUnavailable
from tests.helpers import eventually
from tests.mqtt import publish
from tests.servers import MosquittoServer, RedisServer

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000
INBOX = 300
BATCH = 100


async def test_qos0_beyond_the_inbox_bound_is_dropped_and_counted_qos1_is_kept(
    own_redis: RedisServer, mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    qos0, qos1 = 2000, 50
    routes = RoutingTable(DEFAULT_ROUTES)
    config = broker_config(
        mosquitto.url,
        client_id=f"ingest-qos0-{uuid.uuid4().hex[:6]}",
        inbox_max_messages=INBOX,
    )
    subscriber = Subscriber(config, routes.filters)
    own_redis.stop()
    async with QueueClient.from_url(own_redis.url) as client:
        ingestor = Ingestor(
            client=client,
            subscriber=subscriber,
            routes=routes,
            options=IngestOptions(batch_size=BATCH, retry_first_s=0.05, retry_cap_s=0.5),
        )
        await subscriber.start()
        task = asyncio.create_task(ingestor.run())
        await eventually(lambda: subscriber.subscribed, what="subscribed")

        readings = [
            ("m0/realtime", json.dumps({"temp": i, "timestamp": TS + i}).encode())
            for i in range(qos0)
        ]
        configs = [
            ("m1/tech", json.dumps({"rev": i, "timestamp": TS + i}).encode()) for i in range(qos1)
        ]
        with caplog.at_level(logging.WARNING, logger="conveyor_ingestor.broker"):
            assert await asyncio.to_thread(publish, mosquitto.port, readings, qos=0) == qos0
            assert await asyncio.to_thread(publish, mosquitto.port, configs) == qos1

            def accounted() -> bool:
                held = int(ingestor.metrics.received._value.get()) + len(subscriber.inbox)
                return held + subscriber.qos0_dropped == qos0 + qos1

            await eventually(accounted, what="every delivery held or dropped")
        dropped = subscriber.qos0_dropped
        assert dropped >= qos0 - INBOX - BATCH
        assert ingestor.metrics.inbox_dropped._value.get() == dropped
        assert len(subscriber.inbox) <= INBOX + qos1  # QoS 1 is kept beyond the bound
        drop_logs = [r for r in caplog.records if "QoS 0" in r.getMessage()]
        assert len(drop_logs) == 1, "logged at most once per interval"
        assert "INGEST_INBOX_MAX_MESSAGES" in drop_logs[0].getMessage()
        assert not ingestor.ready

        own_redis.start()

        async def all_in() -> bool:
            try:
                realtime = (await client.queue_stats("mqtt_realtime")).pending
                tech = (await client.queue_stats("mqtt_tech")).pending
            except QueueUnavailable:  # this test's own pooled connection died with Redis
                return False
            return (realtime, tech) == (qos0 - dropped, qos1)

        await eventually(all_in, timeout=20, what="what was kept, enqueued after Redis returned")
        assert subscriber.inbox_bytes == 0
        ingestor.stop()
        await task
        await subscriber.stop()


def test_the_inbox_bound_counts_bytes_too() -> None:
    config = broker_config("mqtt://127.0.0.1:1", client_id="bytes", inbox_max_bytes=1000)
    subscriber = Subscriber(config, ["+/realtime"])
    for qos in (0, 0, 1, 0):
        subscriber._on_message(subscriber._client, None, _message("m/realtime", 400, qos))
    # 410 + 410 fit; the third QoS 0 would pass 1000 bytes; the QoS 1 one is kept regardless.
    assert [d.qos for d in subscriber.inbox] == [0, 0, 1]
    assert subscriber.qos0_dropped == 1
    assert subscriber.inbox_bytes == 3 * 410
    assert [d.qos for d in subscriber.take(2)] == [0, 0]
    assert subscriber.inbox_bytes == 410


def _message(topic: str, size: int, qos: int) -> MQTTMessage:
    message = MQTTMessage(mid=1, topic=topic.encode())
    message.payload = b"x" * size
    message.qos = qos
    return message
