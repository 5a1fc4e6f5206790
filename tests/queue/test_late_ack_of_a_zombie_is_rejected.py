"""A worker that lost its lease (it stalled past the lease time) cannot acknowledge a job
that has meanwhile gone to another worker: the token no longer matches."""

from __future__ import annotations

import asyncio

import pytest

from reliable_queue import Job, QueueClient
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_zombie_ack_is_rejected_and_the_job_counts_once(client: QueueClient) -> None:
    await client.set_policy("zombie", lease_s=1)
    await client.enqueue("zombie", {"n": 1}, job_id="z1")
    runs: list[str] = []
    release_zombie = asyncio.Event()

    async def stalled(job: Job) -> None:
        runs.append(f"zombie:{job.attempt}")
        await release_zombie.wait()

    async def healthy(job: Job) -> None:
        runs.append(f"healthy:{job.attempt}")

    # The zombie never renews (heartbeat far apart), so its lease lapses after 1 s.
    zombie = client.worker("zombie", stalled, heartbeat_interval=3600)
    await zombie.start()
    await eventually(lambda: bool(runs), what="zombie claimed the job")
    rescuer = client.worker("zombie", healthy, heartbeat_interval=0.2)
    await rescuer.start()

    async def rescued() -> bool:
        return (await client.queue_stats("zombie")).completed == 1

    await eventually(rescued, timeout=10, what="job recovered and processed by the rescuer")
    release_zombie.set()  # the zombie finishes late and tries to ack
    await eventually(lambda: zombie.counters.leases_lost == 1, what="zombie ack rejected")
    await zombie.stop()
    await rescuer.stop()
    stats = await client.queue_stats("zombie")
    assert stats.completed == 1
    assert stats.recovered == 1
    assert zombie.counters.processed == 0
    assert rescuer.counters.processed == 1
    assert runs == ["zombie:1", "healthy:1"]  # a lost lease is not a failed attempt
