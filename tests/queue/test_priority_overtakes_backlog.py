"""Higher priority runs first, FIFO within a priority, and a new urgent job jumps a backlog."""

from __future__ import annotations

import asyncio

import pytest

from reliable_queue import Job, NewJob, QueueClient
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_priority_order_then_fifo(client: QueueClient) -> None:
    items = [NewJob({"p": p, "i": i}, priority=p) for i in range(20) for p in (1, 5, 10, -3)]
    await client.enqueue_many("prio", items)
    order: list[tuple[int, int]] = []

    async def handler(job: Job) -> None:
        order.append((job.data["p"], job.data["i"]))

    stop = await client.start_worker("prio", handler, concurrency=1)
    await eventually(lambda: len(order) == len(items), what=f"{len(items)} jobs processed")
    await stop()
    expected = [(p, i) for p in (10, 5, 1, -3) for i in range(20)]
    assert order == expected


async def test_urgent_job_overtakes_a_backlog_of_ten_thousand(client: QueueClient) -> None:
    await client.enqueue_many("backlog", ({"n": n} for n in range(10_000)), priority=1)
    seen: list[str] = []
    urgent_seen = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append(job.id)
        if job.id == "urgent":
            urgent_seen.set()
        await asyncio.sleep(0.001)  # a job's work: the backlog drains at a pace

    stop = await client.start_worker("backlog", handler, concurrency=4)
    await eventually(lambda: len(seen) >= 100, interval=0.005, what="100 backlog jobs started")
    await client.enqueue("backlog", {"alarm": True}, priority=10, job_id="urgent")
    started_before = len(seen)
    await asyncio.wait_for(urgent_seen.wait(), 5)
    position = seen.index("urgent")
    await stop()
    # Only jobs already claimed when it arrived (at most the 4 slots, plus one claim in
    # flight) may start before it; the rest of the backlog waits.
    assert position - started_before <= 8
    assert (await client.queue_stats("backlog")).pending > 9_000
