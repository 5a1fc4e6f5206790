"""Enqueue, process, acknowledge: the basic path, idempotent ids, batches, delays, stats."""

from __future__ import annotations

import asyncio
import time

import pytest

from reliable_queue import Job, NewJob, QueueClient
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_every_enqueued_job_is_processed_once(client: QueueClient) -> None:
    seen: list[int] = []

    async def handler(job: Job) -> None:
        seen.append(job.data["n"])

    ids = await asyncio.gather(*(client.enqueue("flow", {"n": n}) for n in range(500)))
    assert len(set(ids)) == 500
    stop = await client.start_worker("flow", handler, concurrency=8)

    async def all_done() -> bool:
        return (await client.queue_stats("flow")).completed == 500

    await eventually(all_done, what="500 jobs completed")
    await stop()
    assert sorted(seen) == list(range(500))
    stats = await client.queue_stats("flow")
    assert (stats.pending, stats.processing, stats.failed) == (0, 0, 0)


async def test_same_job_id_is_not_queued_twice_while_alive(client: QueueClient) -> None:
    first = await client.enqueue("idem", {"v": 1}, job_id="machine-7:42")
    second = await client.enqueue("idem", {"v": 2}, job_id="machine-7:42")
    assert first == second == "machine-7:42"
    assert (await client.queue_stats("idem")).pending == 1
    assert client.duplicates_skipped == 1
    assert await client.job_data("idem", "machine-7:42") == {"v": 1}

    done = asyncio.Event()

    async def handler(job: Job) -> None:
        done.set()

    stop = await client.start_worker("idem", handler)
    await asyncio.wait_for(done.wait(), 5)
    await stop()
    # Finished: the id may be used again for a new job.
    await client.enqueue("idem", {"v": 3}, job_id="machine-7:42")
    assert await client.job_state("idem", "machine-7:42") == "pending"
    assert await client.job_data("idem", "machine-7:42") == {"v": 3}


async def test_enqueue_many_keeps_per_item_options(client: QueueClient) -> None:
    ids = await client.enqueue_many(
        "many",
        [{"a": 1}, NewJob({"b": 2}, priority=9, job_id="b"), NewJob({"c": 3}, delay=60)],
        priority=1,
    )
    assert ids[1] == "b"
    assert await client.job_state("many", ids[0]) == "pending"
    assert await client.job_state("many", ids[2]) == "delayed"
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.id)

    stop = await client.start_worker("many", handler)
    await eventually(lambda: len(order) == 2, what="two ready jobs processed")
    await stop()
    assert order == ["b", ids[0]]


async def test_delayed_job_waits_its_delay(client: QueueClient) -> None:
    started: list[float] = []

    async def handler(job: Job) -> None:
        started.append(time.time())

    stop = await client.start_worker("later", handler)
    t0 = time.time()
    await client.enqueue("later", {}, delay=1.0)
    await eventually(lambda: bool(started), timeout=5, what="delayed job ran")
    await stop()
    assert 0.9 <= started[0] - t0 <= 1.6


async def test_stats_have_the_documented_shape(client: QueueClient) -> None:
    await client.enqueue("shape", {"x": 1})
    stats = await client.stats()
    assert stats["workers"] == "stopped"
    q = stats["queues"]["shape"]
    for key in ("pending", "processing", "delayed", "failed", "completed", "oldest_pending_age_s"):
        assert key in q
    assert q["pending"] == 1
    await asyncio.sleep(0.3)  # the subject: the oldest job's age grows while it waits
    assert (await client.queue_stats("shape")).oldest_pending_age_s >= 0.25

    async def handler(job: Job) -> None:
        await asyncio.sleep(10)

    stop = await client.start_worker("shape", handler, drain_timeout=0.1)
    assert (await client.stats())["workers"] == "running"
    await stop()


async def test_batch_handler_can_fail_single_jobs(client: QueueClient) -> None:
    from reliable_queue import PermanentError

    await client.enqueue_many("partial", [{"n": n} for n in range(10)])
    seen: list[int] = []

    async def handler(jobs: list[Job]) -> dict[str, Exception]:
        seen.extend(j.data["n"] for j in jobs)
        return {j.id: PermanentError("odd") for j in jobs if j.data["n"] % 2}

    stop = await client.start_worker("partial", handler, batch_size=10)

    async def settled() -> bool:
        s = await client.queue_stats("partial")
        return s.completed == 5 and s.failed == 5

    await eventually(settled, what="5 acked, 5 dead")
    await stop()
    assert sorted(seen) == list(range(10))
    assert sorted(d.data["n"] for d in await client.dead_letters("partial")) == [1, 3, 5, 7, 9]
