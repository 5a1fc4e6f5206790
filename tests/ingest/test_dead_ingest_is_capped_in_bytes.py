"""``dead:ingest`` is capped in bytes as well as in count: a flood of rejected payloads evicts the
oldest letters first, keeps the newest, counts every eviction, and holds Redis memory under the
cap. The running byte total survives dead letters leaving by other paths (purge, replay).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import cast

import pytest
from conveyor_ingestor import (
    DEFAULT_ROUTES,
    IngestOptions,
    Ingestor,
    RoutingTable,
    Subscriber,
    broker_config,
)
from conveyor_ingestor.ingesting import DEAD_TOPIC_CHARS, REJECTS_LOGGED_PER_INTERVAL
from redis.asyncio import Redis

from reliable_queue import NewDeadLetter, QueueClient
from reliable_queue.dead_letters import LETTER_OVERHEAD_BYTES, DeadLetterCap
from reliable_queue.keys import QueueKeys
from tests.helpers import eventually
from tests.mqtt import publish
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

KEYS = QueueKeys.for_queue("ingest")


async def test_a_flood_of_rejected_payloads_keeps_dead_ingest_under_its_byte_cap(
    mosquitto: MosquittoServer,
    client: QueueClient,
    caplog: pytest.LogCaptureFixture,
    raw_redis: Redis,
) -> None:
    cap, flood = 512 * 1024, 600
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(
        broker_config(mosquitto.url, client_id=f"ingest-dead-{uuid.uuid4().hex[:6]}"),
        routes.filters,
    )
    ingestor = Ingestor(
        client=client,
        subscriber=subscriber,
        routes=routes,
        options=IngestOptions(dead_max_bytes=cap),
    )
    await subscriber.start()
    task = asyncio.create_task(ingestor.run())
    try:
        await eventually(lambda: ingestor.ready, what="ingestor ready")
        # 4 KiB of not-JSON each: what dead:ingest keeps of a rejected payload at most.
        junk = [("m1/realtime", f"{i:06d}".encode() + b"\x01" * 4090) for i in range(flood)]
        with caplog.at_level(logging.WARNING, logger="conveyor_ingestor.ingesting"):
            assert await asyncio.to_thread(publish, mosquitto.port, junk) == flood

            async def all_rejected() -> bool:
                return int(ingestor.metrics.rejected.labels("not_json")._value.get()) == flood

            await eventually(all_rejected, what="every payload rejected")
    finally:
        ingestor.stop()
        await task
        await subscriber.stop()

    kept = await client.dead_letter_count("ingest")
    accounted = await _recount(raw_redis)
    assert 0.9 * cap <= accounted <= cap
    assert kept < flood
    evicted = flood - kept
    assert ingestor.metrics.dead_evicted._value.get() == evicted
    assert await _counted(raw_redis, "dead_evicted") == evicted
    # The oldest went first: the newest letters are the ones kept.
    letters = await client.dead_letters("ingest", limit=flood)
    numbers = sorted(int(d.data["payload"][:6]) for d in letters)
    assert numbers == list(range(flood - kept, flood))
    # What Redis really spends on them stays under the cap too.
    used = 0
    for key in (KEYS.jobs, KEYS.dead, KEYS.dead_info):
        used += int(await raw_redis.memory_usage(key, samples=0) or 0)
    assert used <= cap, f"{used:,} bytes in Redis for a cap of {cap:,}"
    # A flood of bad input is not a flood of log lines.
    lines = [r.getMessage() for r in caplog.records]
    assert sum("rejected a message" in m for m in lines) == REJECTS_LOGGED_PER_INTERVAL
    assert sum("dead:ingest is full" in m for m in lines) == 1


async def test_a_letter_keeps_only_the_start_of_a_huge_topic(
    mosquitto: MosquittoServer, client: QueueClient
) -> None:
    """A topic may be 64 KiB; the letter keeps enough to find the device and says how long it
    was, so one letter stays far below the smallest byte cap."""
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(
        broker_config(mosquitto.url, client_id=f"ingest-topic-{uuid.uuid4().hex[:6]}"),
        routes.filters,
    )
    ingestor = Ingestor(client=client, subscriber=subscriber, routes=routes)
    await subscriber.start()
    task = asyncio.create_task(ingestor.run())
    topic = "m" * 30_000 + "/realtime"  # a machine id far over the name limit
    try:
        await eventually(lambda: ingestor.ready, what="ingestor ready")
        assert await asyncio.to_thread(publish, mosquitto.port, [(topic, b'{"t": 1}')]) == 1

        async def rejected() -> bool:
            return await client.dead_letter_count("ingest") == 1

        await eventually(rejected, what="the message in dead:ingest")
    finally:
        ingestor.stop()
        await task
        await subscriber.stop()
    [letter] = await client.dead_letters("ingest", limit=1)
    assert letter.reason == "name_too_long"
    assert letter.data["topic"] == topic[:DEAD_TOPIC_CHARS]
    assert letter.data["topic_chars"] == len(topic)
    assert len(letter.error) < 1024


async def test_count_cap_and_a_total_that_survives_purge_and_replay(
    client: QueueClient, raw_redis: Redis
) -> None:
    cap = DeadLetterCap(max_count=40, max_bytes=64 * 1024)

    def letters(start: int, n: int) -> list[NewDeadLetter]:
        return [
            NewDeadLetter(data={"n": i, "pad": "p" * (i % 7) * 100}, reason="x", error="e")
            for i in range(start, start + n)
        ]

    done = await client.add_dead_letters("ingest", letters(0, 30), cap=cap)
    assert (done.added, done.evicted) == (30, 0)
    assert await _counted(raw_redis) == await _recount(raw_redis)

    ids = [d.id for d in await client.dead_letters("ingest", limit=10)]
    assert await client.purge_dead_letters("ingest", ids[:5]) == 5
    assert await client.replay_dead_letters("ingest", ids[5:]) == 5
    done = await client.add_dead_letters("ingest", letters(30, 30), cap=cap)
    assert (done.added, done.evicted) == (30, 10)  # 20 left + 30 new, capped at 40
    assert await client.dead_letter_count("ingest") == 40
    assert await _counted(raw_redis) == await _recount(raw_redis)

    small = DeadLetterCap(max_bytes=20 * 1024)
    done = await client.add_dead_letters("ingest", [], cap=small)
    assert done.added == 0
    assert done.evicted > 0
    assert await _recount(raw_redis) <= small.max_bytes
    assert await _counted(raw_redis) == await _recount(raw_redis)


async def _counted(redis: Redis, field: str = "dead_bytes") -> int:
    return int(cast(bytes, await redis.hget(KEYS.counters, field)))


async def _recount(redis: Redis) -> int:
    """The weight of every letter in dead:ingest, as dead_add.lua defines it."""
    total = 0
    for raw in cast(list[bytes], await redis.zrange(KEYS.dead, 0, -1)):
        total += _alloc(await redis.hstrlen(KEYS.jobs, raw))
        total += _alloc(await redis.hstrlen(KEYS.dead_info, raw))
        total += 3 * _alloc(len(raw)) + LETTER_OVERHEAD_BYTES
    return total


def _alloc(n: int) -> int:
    """jemalloc's size class for an sds string of n bytes."""
    size = n + (4 if n < 256 else 6 if n < 65536 else 10)
    if size <= 128:
        return math.ceil(size / 16) * 16
    step = (1 << (size - 1).bit_length()) // 8
    return math.ceil(size / step) * step
