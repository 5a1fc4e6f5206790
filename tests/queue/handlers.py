"""Job handlers that tests run inside real ``conveyor work`` processes."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from reliable_queue import Job


async def record(job: Job) -> None:
    """Record the job id in the Redis list ``test:processed`` (the same Redis as the queue)."""
    r = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        await r.rpush("test:processed", job.id)
    finally:
        await r.aclose()


async def slow_record(job: Job) -> None:
    """Take ``job.data['seconds']`` seconds, then record the job."""
    await asyncio.sleep(float(job.data.get("seconds", 1)))
    await record(job)


async def hang(job: Job) -> None:
    """Never finish; note that the job started."""
    r = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        await r.rpush("test:started", job.id)
    finally:
        await r.aclose()
    await asyncio.Event().wait()
