"""Redis stopped for a few seconds mid-stream: the ingestor stops acknowledging, holds what it
has, retries, and recovers by itself; nothing is lost."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from conveyor_ingestor import DEFAULT_ROUTES, Ingestor, RoutingTable, Subscriber, broker_config

from reliable_queue import QueueClient, QueueUnavailable
from tests.helpers import eventually
from tests.mqtt import publish
from tests.servers import MosquittoServer, RedisServer

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000


async def test_redis_down_mid_stream_loses_nothing(
    own_redis: RedisServer, mosquitto: MosquittoServer
) -> None:
    n = 6000
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(
        broker_config(mosquitto.url, client_id=f"ingest-outage-{uuid.uuid4().hex[:6]}"),
        routes.filters,
    )
    async with QueueClient.from_url(own_redis.url) as client:
        ingestor = Ingestor(client=client, subscriber=subscriber, routes=routes)
        await subscriber.start()
        task = asyncio.create_task(ingestor.run())
        await eventually(lambda: ingestor.ready, what="ingestor ready")  # SUBACK included

        def paced() -> None:
            for start in range(0, n, 500):
                batch = [
                    (f"m{i % 3}/tech", json.dumps({"rev": i, "timestamp": TS + i}).encode())
                    for i in range(start, start + 500)
                ]
                publish(mosquitto.port, batch)

        sender = threading.Thread(target=paced)
        sender.start()

        async def some() -> bool:
            return (await client.queue_stats("mqtt_tech")).pending >= 1000

        await eventually(some, timeout=30, what="stream flowing")
        own_redis.stop()
        await eventually(lambda: not ingestor.ready, timeout=10, what="not ready")
        await asyncio.sleep(3)  # the subject: three seconds of the stream without Redis
        held = len(subscriber.inbox)
        own_redis.start()

        async def all_in() -> bool:
            try:
                return (await client.queue_stats("mqtt_tech")).pending == n
            except QueueUnavailable:  # this test's own pooled connection died with Redis
                return False

        await eventually(all_in, timeout=60, what="every message after Redis returned")
        await asyncio.to_thread(sender.join)
        assert ingestor.ready
        assert ingestor.metrics.redis_errors._value.get() > 0
        # While Redis was down the broker stopped sending once the receive window was full.
        assert held <= subscriber.config.receive_maximum + 1000
        ingestor.stop()
        await task
        await subscriber.stop()


async def test_ready_once_redis_answers_with_no_message_flowing(
    own_redis: RedisServer, mosquitto: MosquittoServer
) -> None:
    # On a cluster the ingestor may start before Redis: it must turn ready when Redis comes
    # up, not when the first message arrives (found on kind: helm --wait never finished).
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(
        broker_config(mosquitto.url, client_id=f"ingest-late-{uuid.uuid4().hex[:6]}"),
        routes.filters,
    )
    own_redis.stop()
    async with QueueClient.from_url(own_redis.url) as client:
        ingestor = Ingestor(client=client, subscriber=subscriber, routes=routes)
        await subscriber.start()
        task = asyncio.create_task(ingestor.run())
        await eventually(lambda: subscriber.subscribed, what="subscribed")
        await asyncio.sleep(1.5)  # a negative check: subscribed, it stays unready without Redis
        assert not ingestor.ready  # Redis is down
        own_redis.start()
        await eventually(lambda: ingestor.ready, timeout=10, what="ready after Redis")
        ingestor.stop()
        await task
        await subscriber.stop()
