"""The live fan-out survives a Redis restart: it loses its subscription, retries with jittered
backoff (so gateway replicas do not resubscribe in lockstep) and, once Redis is back,
subscribes again and delivers what the workers publish, without a client reconnecting."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from conveyor_gateway.live import LiveHub, Subscription
from conveyor_gateway.metrics import GatewayMetrics
from conveyor_plant.keys import live_channel

from tests.helpers import eventually
from tests.servers import RedisServer

pytestmark = pytest.mark.integration


async def test_hub_resubscribes_and_delivers_after_redis_returns(own_redis: RedisServer) -> None:
    metrics = GatewayMetrics()
    redis = aioredis.Redis.from_url(own_redis.url)
    hub = LiveHub(redis, buffer=100, buffer_bytes=1 << 20, metrics=metrics)
    client = hub.connect(Subscription())
    task = asyncio.create_task(hub.run())

    async def subscribed() -> bool:
        return hub.subscribed

    async def lost() -> bool:
        return not hub.subscribed

    try:
        await eventually(subscribed, what="the hub subscribed")
        own_redis.stop()
        await eventually(lost, what="the hub noticed Redis left")
        own_redis.start()
        await eventually(subscribed, timeout=15, what="the hub subscribed again")
        event = {"kind": "realtime", "machine": "m1", "ts": 1, "values": {"t": 1}}
        async with aioredis.Redis.from_url(own_redis.url) as publisher:
            await publisher.publish(live_channel("m1"), json.dumps(event))
        assert json.loads(await asyncio.wait_for(client.take(), 5)) == event
        assert metrics.redis_errors._value.get() >= 1
        # The next wait after a success is the first one again, drawn with jitter.
        assert 0.25 <= hub._backoff.peek() <= 0.5
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await redis.aclose()
