"""A queue's history lives in Redis: samplers side by side make one series (the first sample of
a slot stands), a new client reads what an old one recorded, each series keeps only its window,
and deleting the queue's data deletes its history for good."""

from __future__ import annotations

import pytest
import redis.asyncio

from reliable_queue import QueueClient
from reliable_queue.history import COARSE_KEEP_S
from reliable_queue.keys import QueueKeys

pytestmark = pytest.mark.integration


async def test_samplers_side_by_side_make_one_series_a_new_client_reads(
    client: QueueClient, redis_url: str
) -> None:
    await client.enqueue_many("alerts", [{"n": i} for i in range(3)])
    other = QueueClient.from_url(redis_url)  # a second gateway replica
    try:
        first = await client.stats()
        await client.record_history(first, interval_s=3600, keep_s=7200)
        await client.enqueue_many("alerts", [{"n": 3}])
        await other.record_history(await other.stats(), interval_s=3600, keep_s=7200)
        now, found = await other.history(["alerts"], seconds=7200, keep_s=7200)
    finally:
        await other.close()
    [sample] = found["alerts"]  # one slot of an hour: the first sample stands
    assert (sample.pending, sample.enqueued) == (3, 3)
    assert sample.oldest_pending_age_s == first["queues"]["alerts"]["oldest_pending_age_s"]
    assert now - 60 < sample.at <= now  # when it was taken, by Redis's clock
    async with QueueClient.from_url(redis_url) as restarted:
        _, again = await restarted.history(["alerts"], seconds=7200, keep_s=7200)
        assert again == found
        _, longer = await restarted.history(["alerts"], seconds=COARSE_KEEP_S, keep_s=7200)
    assert [s.pending for s in longer["alerts"]] == [3]  # the minute series has it too


async def test_each_series_keeps_its_window_and_goes_with_the_queue(
    client: QueueClient, raw_redis: redis.asyncio.Redis
) -> None:
    keys = QueueKeys.for_queue("alerts")
    await client.enqueue_many("alerts", [{"n": 1}])
    for _ in range(3):
        await client.record_history(await client.stats(), interval_s=0.001, keep_s=5)
        await raw_redis.zadd(keys.history, {"1|{}": 1})  # an old sample, long out of its window
    await client.record_history(await client.stats(), interval_s=0.001, keep_s=5)
    fine = await raw_redis.zrange(keys.history, 0, -1, withscores=True)
    assert 1 <= len(fine) <= 4, fine  # one per slot of 1 ms
    assert all(score > 1 for _, score in fine)  # the old one trimmed
    assert 0 < await raw_redis.pttl(keys.history) <= 5000
    assert await raw_redis.zcard(keys.history_coarse) == 1  # one minute
    stats = await client.stats()
    await client.delete_queue("alerts")
    assert not await raw_redis.exists(keys.history, keys.history_coarse)
    await client.record_history(stats, interval_s=0.001, keep_s=5)  # a sampler's late write
    assert not await raw_redis.exists(keys.history, keys.history_coarse)  # not brought back
