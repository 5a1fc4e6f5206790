"""Concurrency set in the queue's policy in Redis reaches a running worker without a restart."""

from __future__ import annotations

import asyncio

import pytest

from reliable_queue import Job, QueueClient
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_raising_and_lowering_concurrency_while_running(client: QueueClient) -> None:
    running = 0
    peak = 0

    async def handler(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)  # a job's work, long enough for slots to overlap
        running -= 1

    await client.enqueue_many("live", [{} for _ in range(3000)])
    worker = client.worker("live", handler, concurrency=1, heartbeat_interval=0.2)
    await worker.start()
    await asyncio.sleep(0.5)  # a negative check: half a second of a backlog never runs two
    assert peak == 1

    await client.set_policy("live", concurrency=6)
    await eventually(lambda: peak == 6, timeout=3, what="six jobs at once")
    assert worker.concurrency == 6

    await client.set_policy("live", concurrency=2)
    await eventually(lambda: worker.concurrency == 2, timeout=3, what="concurrency 2")
    await eventually(lambda: running <= 2, what="the jobs started under concurrency 6 finished")
    peak = 0
    await asyncio.sleep(0.5)  # the subject: half a second of a backlog at concurrency 2
    assert peak == 2
    await worker.stop()
