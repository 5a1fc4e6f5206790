"""kill -9 of a worker process mid-job: its jobs come back after the lease and none is lost;
a job that keeps killing its workers ends in dead letters."""

from __future__ import annotations

import time

import pytest
import redis

from reliable_queue import QueueClient
from tests.helpers import eventually, start_cli

pytestmark = pytest.mark.integration


def _processed(redis_url: str) -> list[str]:
    with redis.Redis.from_url(redis_url) as r:
        return [x.decode() for x in r.lrange("test:processed", 0, -1)]


CRASH_WORKER = (
    "work",
    "--queue",
    "crash",
    "--concurrency",
    "8",
    "--handler",
    "tests.queue.handlers:slow_record",
)


async def test_killed_worker_jobs_return_and_are_processed(
    client: QueueClient, redis_url: str
) -> None:
    await client.set_policy("crash", lease_s=2)
    ids = await client.enqueue_many("crash", [{"seconds": 0.5} for _ in range(40)])
    victim = start_cli(*CRASH_WORKER, redis_url=redis_url)

    async def busy() -> bool:
        return (await client.queue_stats("crash")).processing >= 8

    await eventually(busy, timeout=20, what="victim holds 8 jobs")
    victim.kill()  # kill -9: no drain, no release
    killed_at = time.monotonic()
    assert (await client.queue_stats("crash")).processing >= 8  # still leased to the dead worker

    survivor = start_cli(*CRASH_WORKER, redis_url=redis_url)
    try:

        async def all_processed() -> bool:
            return set(ids) <= set(_processed(redis_url))

        await eventually(all_processed, timeout=60, what="every job processed")
        stats = await client.queue_stats("crash")
        assert stats.recovered >= 1
        assert stats.failed == 0
        # Recovery waited for the lease (2 s) and no longer than lease + a few heartbeats.
        assert time.monotonic() - killed_at < 30
    finally:
        code = survivor.stop()
    assert code == 0, survivor.output()


async def test_job_that_keeps_killing_workers_is_dead_lettered(
    client: QueueClient, redis_url: str
) -> None:
    await client.set_policy("poison", lease_s=1, max_recoveries=1)
    await client.enqueue("poison", {"boom": True}, job_id="poison-pill")
    r = redis.Redis.from_url(redis_url)
    try:
        # Each worker reaps the expired lease of the one before, claims the job and dies.
        for attempt in (1, 2):
            worker = start_cli(
                "work",
                "--queue",
                "poison",
                "--handler",
                "tests.queue.handlers:hang",
                redis_url=redis_url,
            )

            async def started(n: int = attempt) -> bool:
                return int(r.llen("test:started")) >= n

            await eventually(started, timeout=20, what=f"attempt {attempt} started")
            worker.kill()
        last = start_cli(
            "work",
            "--queue",
            "poison",
            "--handler",
            "tests.queue.handlers:hang",
            redis_url=redis_url,
        )
        try:

            async def dead() -> bool:
                return await client.job_state("poison", "poison-pill") == "dead"

            await eventually(dead, timeout=20, what="poison pill dead-lettered")
        finally:
            last.stop()
    finally:
        r.close()
    assert int(r.llen("test:started")) == 2  # the third worker never ran it
    [letter] = await client.dead_letters("poison")
    assert letter.reason == "lost"
    assert letter.recoveries == 2
    assert "crashed, killed or hung" in letter.error
    assert letter.data == {"boom": True}
