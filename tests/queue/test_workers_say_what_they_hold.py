"""Each worker's heartbeat says how many jobs it holds (``QueueClient.jobs_held``), which the
operator turns into pod-deletion-costs so that scale-in removes idle pods first; a stopped
worker and one whose heartbeats ended are forgotten."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import redis.asyncio as aioredis

from reliable_queue import Job, QueueClient
from reliable_queue.keys import QueueKeys
from tests.helpers import eventually

pytestmark = pytest.mark.integration


async def test_held_jobs_follow_the_work_and_a_stopped_worker_is_gone(
    client: QueueClient,
) -> None:
    release = asyncio.Event()

    async def hold(job: Job) -> None:
        await release.wait()

    worker = client.worker("held", hold, concurrency=3, heartbeat_interval=0.1, worker_id="pod-a:7")
    await worker.start()
    try:
        assert await client.jobs_held("held") == {"pod-a:7": 0}  # start() beats once
        await client.enqueue_many("held", [{"n": 1}, {"n": 2}])

        async def holding(n: int) -> bool:
            return await client.jobs_held("held") == {"pod-a:7": n}

        await eventually(lambda: holding(2), what="the heartbeat to say 2 jobs are held")
        release.set()
        await eventually(lambda: holding(0), what="the heartbeat to say none are held")
    finally:
        await worker.stop()
    assert await client.jobs_held("held") == {}


async def test_a_worker_whose_heartbeats_ended_is_forgotten(
    client: QueueClient, redis_url: str
) -> None:
    keys = QueueKeys.for_queue("held-gone")
    r = aioredis.Redis.from_url(redis_url)
    try:  # a worker that crashed long ago: its last heartbeat at the epoch
        await r.zadd(keys.workers, {"crashed:1": 0})
        await r.hset(keys.held, "crashed:1", 4)
        assert await client.jobs_held("held-gone") == {}  # not live, though still recorded
    finally:
        await r.aclose()

    async def idle(job: Job) -> None:
        return None

    stop = await client.start_worker("held-gone", idle)
    try:
        # start() beat once: the crashed worker's record went with it, the new one is there.
        assert await client.jobs_held("held-gone") == {f"{socket.gethostname()}:{os.getpid()}": 0}
        r = aioredis.Redis.from_url(redis_url)
        try:
            assert await r.hkeys(keys.held) == [f"{socket.gethostname()}:{os.getpid()}".encode()]
        finally:
            await r.aclose()
    finally:
        await stop()


async def test_a_worker_that_went_idle_says_so_before_its_next_heartbeat(
    client: QueueClient,
) -> None:
    release = asyncio.Event()

    async def hold(job: Job) -> None:
        await release.wait()

    # Heartbeats 6 s apart: right after one has reported the job, the job ends; only the early
    # beat on going idle can report 0 within 3 s, long before the next regular one.
    worker = client.worker("held-idle", hold, heartbeat_interval=6, worker_id="pod-b:1")
    await worker.start()
    try:
        await client.enqueue("held-idle", {"n": 1})

        async def holding(n: int) -> bool:
            return await client.jobs_held("held-idle") == {"pod-b:1": n}

        await eventually(lambda: holding(1), timeout=15, what="a heartbeat to report the job")
        release.set()
        await eventually(lambda: holding(0), timeout=3, what="the idle worker to report 0 early")
    finally:
        await worker.stop()
