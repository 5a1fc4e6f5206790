"""stop() lets running jobs finish within the drain bound and gives the rest back to pending,
at their place in line and without counting an attempt."""

from __future__ import annotations

import asyncio

import pytest

from reliable_queue import Job, QueueClient
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_quick_jobs_finish_and_slow_ones_go_back(client: QueueClient) -> None:
    await client.enqueue("drain", {"seconds": 0.2}, job_id="quick", priority=5)
    await client.enqueue("drain", {"seconds": 60}, job_id="slow", priority=5)
    await client.enqueue("drain", {"seconds": 0}, job_id="waiting", priority=1)
    started: list[str] = []

    async def handler(job: Job) -> None:
        started.append(job.id)
        await asyncio.sleep(job.data["seconds"])

    worker = client.worker("drain", handler, concurrency=2, drain_timeout=1.0)
    await worker.start()
    await eventually(lambda: len(started) == 2, what="two jobs running")
    await worker.stop()
    assert (worker.counters.processed, worker.counters.released) == (1, 1)
    assert await client.job_state("drain", "quick") == "finished"
    assert await client.job_state("drain", "slow") == "pending"
    stats = await client.queue_stats("drain")
    assert (stats.processing, stats.pending, stats.retried) == (0, 2, 0)

    seen: list[tuple[str, int]] = []

    async def record(job: Job) -> None:
        seen.append((job.id, job.attempt))

    stop = await client.start_worker("drain", record)
    await eventually(lambda: len(seen) == 2, what="released jobs run again")
    await stop()
    assert seen == [("slow", 1), ("waiting", 1)]  # kept its place ahead of lower priority
