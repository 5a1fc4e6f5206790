"""A Redis at ``maxmemory`` with ``noeviction`` (as the chart runs it) refuses writes with an OOM
error: producers get the retryable ``QueueUnavailable``, nothing is half-written, and enqueues
succeed again once memory is freed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reliable_queue import QueueClient, QueueUnavailable
from tests.servers import RedisServer, require_binary

pytestmark = pytest.mark.integration

PAYLOAD = {"blob": "x" * 20_000}


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = require_binary("redis-server", install="apt-get install redis-server")
    server = RedisServer(
        binary,
        tmp_path / "redis",
        extra=("--maxmemory", "3mb", "--maxmemory-policy", "noeviction"),
    ).start()
    yield server
    server.stop(kill=True)


async def _fill(client: QueueClient, queue: str) -> tuple[int, QueueUnavailable]:
    """Enqueue one job at a time until Redis refuses; the count accepted and the refusal."""
    for accepted in range(10_000):
        try:
            await client.enqueue(queue, PAYLOAD)
        except QueueUnavailable as exc:
            return accepted, exc
    raise AssertionError("Redis never refused a write: is maxmemory set?")


async def test_enqueue_to_a_full_redis_is_queue_unavailable_and_recovers(
    full_redis: RedisServer,
) -> None:
    async with QueueClient.from_url(full_redis.url) as client:
        accepted, refused = await _fill(client, "full")
        assert accepted > 0
        assert "out of memory" in str(refused)
        assert "used memory > 'maxmemory'" in str(refused)  # Redis's own words, kept
        # Nothing half-written: every stored job is pending, and the counters agree.
        stats = await client.queue_stats("full")
        assert stats.pending == accepted == stats.enqueued
        with redis.Redis.from_url(full_redis.url) as raw:
            assert raw.hlen("conveyor:{full}:jobs") == accepted
        # A batch is refused as a whole, through the same mapping.
        with pytest.raises(QueueUnavailable, match="out of memory"):
            await client.enqueue_many("full", [PAYLOAD] * 10)
        assert (await client.queue_stats("full")).pending == accepted

        # The workers drain it (here: the memory limit is raised) and producers carry on.
        with redis.Redis.from_url(full_redis.url) as admin:
            admin.config_set("maxmemory", "0")
        await client.enqueue("full", PAYLOAD)
        assert (await client.queue_stats("full")).pending == accepted + 1
