"""Putting jobs into queues, many at a time even when callers send one at a time.

``enqueue()`` is called per message by producers such as the MQTT ingestor. A round trip per
call would cap a producer at a few thousand jobs a second, so calls made while a send is in
flight are coalesced: each call parks its job in a buffer and awaits a future, and one flusher
task sends the whole buffer as one script call per queue (like a database's group commit). A
caller returns only once Redis has accepted its job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reliable_queue.connection import RedisClient, redis_boundary
from reliable_queue.job import check_job_id, check_priority, encode_payload, new_job_id
from reliable_queue.keys import QUEUE_REGISTRY, QueueKeys
from reliable_queue.scripting import Scripts

log = logging.getLogger(__name__)

MAX_BATCH = 1000
"""Jobs per script call: large enough to amortise the round trip, small enough that one call
never holds Redis for more than a few milliseconds."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue with its own options, for ``enqueue_many``."""

    data: Any
    priority: int | None = None
    job_id: str | None = None
    delay: float | None = None


@dataclass(slots=True)
class _Item:
    job_id: str
    priority: int | None
    """None: the queue's default priority, applied by the enqueue script."""
    delay_ms: int
    payload: bytes
    future: asyncio.Future[bool] | None = field(default=None)


def make_item(data: Any, *, priority: int | None, delay: float, job_id: str | None) -> _Item:
    return _Item(
        job_id=new_job_id() if job_id is None else check_job_id(job_id),
        priority=None if priority is None else check_priority(priority),
        delay_ms=max(0, round(delay * 1000)),
        payload=encode_payload(data),
    )


class Producer:
    """Sends jobs to Redis; shared by every ``enqueue`` call of one client."""

    def __init__(self, redis: RedisClient, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        self._buffers: dict[str, list[_Item]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._registered: set[str] = set()
        self.duplicates = 0
        """Jobs skipped because a job with the same id was still alive."""

    async def submit_one(self, queue: str, item: _Item) -> bool:
        """Queue one job via the coalescing buffer; True if new, False if a live duplicate."""
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        self._buffers.setdefault(queue, []).append(item)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await item.future

    async def send(self, queue: str, items: Sequence[_Item]) -> list[bool]:
        """Send jobs now, in slices of MAX_BATCH; returns one flag per job (True if new)."""
        keys = QueueKeys.for_queue(queue)
        await self.register(queue)
        flags: list[bool] = []
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            args: list[Any] = [len(chunk)]
            for it in chunk:
                priority = "" if it.priority is None else it.priority
                args += (it.job_id, priority, it.delay_ms, it.payload)
            with redis_boundary(f"enqueue to queue {queue!r}"):
                raw = await self._scripts.run(
                    "enqueue",
                    (
                        keys.jobs,
                        keys.pending,
                        keys.delayed,
                        keys.done,
                        keys.counters,
                        keys.wake,
                        keys.config,
                    ),
                    args,
                )
            flags += [bool(f) for f in raw]
        skipped = flags.count(False)
        if skipped:
            self.duplicates += skipped
            log.debug("skipped %d duplicate job ids", skipped, extra={"queue": queue})
        return flags

    async def register(self, queue: str) -> None:
        """Record the queue name in the registry that stats() and the CLI list."""
        if queue not in self._registered:
            with redis_boundary(f"register queue {queue!r}"):
                await self._redis.sadd(QUEUE_REGISTRY, queue)
            self._registered.add(queue)

    async def _flush(self) -> None:
        try:
            while self._buffers:
                buffers, self._buffers = self._buffers, {}
                await asyncio.gather(*(self._flush_queue(q, items) for q, items in buffers.items()))
        finally:
            self._flusher = None

    async def _flush_queue(self, queue: str, items: list[_Item]) -> None:
        try:
            flags = await self.send(queue, items)
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
            for it in items:
                if it.future is not None and not it.future.done():
                    it.future.set_exception(exc)
            return
        for it, flag in zip(items, flags, strict=True):
            if it.future is not None and not it.future.done():
                it.future.set_result(flag)
