"""Redis killed and restarted under load (AOF, fsync always): producers get a clear
retryable error, workers carry on by themselves, and no acknowledged job is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from reliable_queue import Job, QueueClient, QueueUnavailable
from tests.helpers import eventually
from tests.servers import RedisServer

pytestmark = pytest.mark.integration


async def test_restart_under_load_loses_no_acknowledged_job(own_redis: RedisServer) -> None:
    processed: set[str] = set()
    acknowledged: set[str] = set()
    producer_errors = 0

    async def handler(job: Job) -> None:
        processed.add(job.id)

    async with (
        QueueClient.from_url(own_redis.url) as producer,
        QueueClient.from_url(own_redis.url) as consumer,
    ):
        # A claim whose reply died with the server leaves its jobs leased to nobody until
        # the lease ends: keep it short so the test does not wait 30 s for them.
        await consumer.set_policy("outage", lease_s=3)
        worker = consumer.worker("outage", handler, concurrency=16, heartbeat_interval=0.2)
        await worker.start()

        async def produce(offset: int) -> None:
            nonlocal producer_errors
            for i in range(offset, offset + 1500):
                job_id = f"job-{i}"
                while True:  # the documented pattern: retry with the same id
                    try:
                        await producer.enqueue("outage", {"i": i}, job_id=job_id)
                        acknowledged.add(job_id)
                        break
                    except QueueUnavailable:
                        producer_errors += 1
                        await asyncio.sleep(0.05)  # a producer's pause before its retry
                await asyncio.sleep(0.0005)  # paces the load, so the outage meets it midway

        producers = [asyncio.create_task(produce(k * 1500)) for k in range(4)]
        await eventually(lambda: len(acknowledged) > 1000, what="load running")
        own_redis.stop(kill=True)  # kill -9; appendfsync always kept every reply on disk
        down_at = time.monotonic()
        await asyncio.sleep(1.0)  # the subject: a second without Redis, under load
        own_redis.start()
        await asyncio.gather(*producers)

        async def drained() -> bool:
            return acknowledged <= processed

        await eventually(drained, timeout=60, what="every acknowledged job processed")
        await worker.stop()
        assert producer_errors > 0  # the outage was seen, and survived
        assert time.monotonic() - down_at < 60
        stats = await consumer.queue_stats("outage")
        assert stats.pending == 0
        assert stats.failed == 0


async def test_producer_gets_a_clear_error_when_redis_is_down(own_redis: RedisServer) -> None:
    own_redis.stop()
    async with QueueClient.from_url(own_redis.url) as client:
        with pytest.raises(QueueUnavailable, match="Redis unavailable while trying to"):
            await client.enqueue("q", {"x": 1})
