"""A failing job is retried after 2 s, 4 s and 8 s, then parked in dead:<queue> with its
payload, attempts and error; it can be listed, replayed and purged."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from redis.asyncio import Redis

from reliable_queue import Job, PermanentError, QueueClient, Retry
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_backoff_is_2_4_8_seconds_then_dead_letter(client: QueueClient) -> None:
    attempts: list[tuple[int, float]] = []

    async def broken(job: Job) -> None:
        attempts.append((job.attempt, time.monotonic()))
        raise ConnectionRefusedError("influxdb:8086 refused the connection")

    stop = await client.start_worker("flaky", broken)
    await client.enqueue("flaky", {"temp": 21.5}, job_id="t1")

    async def dead() -> bool:
        return await client.job_state("flaky", "t1") == "dead"

    await eventually(dead, timeout=25, what="job dead-lettered after 4 attempts")
    await stop()
    assert [a for a, _ in attempts] == [1, 2, 3, 4]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, (2, 4, 8), strict=True):
        assert expected - 0.05 <= gap <= expected + 0.6, gaps
    [letter] = await client.dead_letters("dead:flaky")
    assert letter.id == "t1"
    assert letter.data == {"temp": 21.5}
    assert letter.attempts == 4
    assert letter.reason == "retries_exhausted"
    assert letter.error.startswith("ConnectionRefusedError: influxdb:8086 refused")
    assert "in broken" in letter.error  # traceback summary
    assert letter.failed_at >= letter.enqueued_at
    stats = await client.queue_stats("flaky")
    assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 3, 1)


async def test_permanent_error_skips_retries_and_replay_runs_it_again(client: QueueClient) -> None:
    fixed = False
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        if not fixed:
            raise PermanentError("unknown machine id 'm-999'")
        done.set()

    stop = await client.start_worker("strict", handler)
    await client.enqueue("strict", {"machine": "m-999"}, job_id="p1")
    await eventually(lambda: _dead(client, "strict", "p1"), what="permanent failure dead-lettered")
    [letter] = await client.dead_letters("strict")
    assert (letter.reason, letter.attempts) == ("permanent", 1)

    fixed = True
    assert await client.replay_dead_letters("strict", ["p1"]) == 1
    await asyncio.wait_for(done.wait(), 5)
    await stop()
    assert await client.dead_letter_count("strict") == 0


async def test_retry_with_explicit_delay(client: QueueClient) -> None:
    times: list[float] = []

    async def handler(job: Job) -> None:
        times.append(time.monotonic())
        if job.attempt == 1:
            raise Retry("device busy", delay=0.3)

    stop = await client.start_worker("explicit", handler)
    await client.enqueue("explicit", {})
    await eventually(lambda: len(times) == 2, timeout=5, what="second attempt")
    await stop()
    assert 0.25 <= times[1] - times[0] <= 0.9


async def test_replay_all_and_purge(client: QueueClient) -> None:
    async def handler(job: Job) -> None:
        raise PermanentError("bad")

    stop = await client.start_worker("bulk", handler, concurrency=8)
    await client.enqueue_many("bulk", [{"i": i} for i in range(2500)])

    async def all_dead() -> bool:
        return await client.dead_letter_count("bulk") == 2500

    await eventually(all_dead, timeout=30, what="2500 dead letters")
    await stop()
    assert len(await client.dead_letters("bulk", limit=10, offset=2490)) == 10
    assert await client.replay_dead_letters("bulk") == 2500
    assert (await client.queue_stats("bulk")).pending == 2500
    stop = await client.start_worker("bulk", handler, concurrency=8)
    await eventually(all_dead, timeout=30, what="2500 dead letters again")
    await stop()
    assert await client.purge_dead_letters("bulk") == 2500
    assert await client.dead_letter_count("bulk") == 0
    assert await client.job_data("bulk", "anything") is None


async def test_dead_letter_retention_caps_the_count(client: QueueClient, raw_redis: Redis) -> None:
    await client.set_policy("capped", dead_max_count=10, max_retries=0)

    async def handler(job: Job) -> None:
        raise ValueError("no")

    stop = await client.start_worker("capped", handler, concurrency=4)
    await client.enqueue_many("capped", [{"i": i} for i in range(200)])

    async def settled() -> bool:
        return (await client.queue_stats("capped")).dead_lettered == 200

    await eventually(settled, timeout=20, what="200 failures")

    async def capped() -> bool:  # by the reaper's next pass
        return await client.dead_letter_count("capped") == 10

    await eventually(capped, timeout=10, what="the dead letters trimmed to 10")
    await stop()
    assert await client.dead_letter_count("capped") == 10
    letters = await client.dead_letters("capped", limit=100)
    assert {d.data["i"] for d in letters} <= set(range(200))
    assert await raw_redis.hlen("conveyor:{capped}:jobs") == 10  # trimmed payloads are gone too


async def _dead(client: QueueClient, queue: str, job_id: str) -> bool:
    return await client.job_state(queue, job_id) == "dead"


async def test_retention_by_age_drops_old_dead_letters_and_finished_records(
    client: QueueClient, raw_redis: Redis
) -> None:
    await client.set_policy("aged", dead_max_age_s=0.5, done_max_age_s=0.5, max_retries=0)

    async def handler(job: Job) -> None:
        if job.data["fail"]:
            raise ValueError("no")

    worker = client.worker("aged", handler, heartbeat_interval=0.2)
    await worker.start()
    await client.enqueue_many("aged", [{"fail": i % 2 == 0} for i in range(20)])

    async def settled() -> bool:
        s = await client.queue_stats("aged")
        return s.completed == 10 and s.dead_lettered == 10

    await eventually(settled, what="10 finished, 10 dead")

    async def trimmed() -> bool:
        s = await client.queue_stats("aged")
        return s.failed == 0 and s.finished_records == 0

    await eventually(trimmed, timeout=5, what="records older than 0.5 s trimmed by the reaper")
    await worker.stop()
    assert await raw_redis.hlen("conveyor:{aged}:jobs") == 0
    assert await raw_redis.hlen("conveyor:{aged}:dead_info") == 0
