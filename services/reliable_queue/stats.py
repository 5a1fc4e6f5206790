"""Queue statistics: what users see in ``conveyor queues`` and ``GET /stats``.

Each figure is read in one script per queue, O(1) or O(log n): ZCARDs, counters, and the heads
of the priority bands for the oldest pending job. Nothing scans.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reliable_queue.connection import redis_boundary
from reliable_queue.keys import QueueKeys
from reliable_queue.scripting import Scripts

WORKER_TTL_S = 10.0
"""A worker whose last heartbeat is older than this is not counted as live."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's figures. ``failed`` counts the dead letters (``dead:<queue>``)."""

    pending: int
    processing: int
    delayed: int
    failed: int
    completed: int
    enqueued: int
    retried: int
    dead_lettered: int
    recovered: int
    finished_records: int
    oldest_pending_age_s: float
    workers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read_queue_stats(scripts: Scripts, queue: str) -> QueueStats:
    keys = QueueKeys.for_queue(queue)
    with redis_boundary(f"read statistics of queue {queue!r}"):
        raw = await scripts.run(
            "stats",
            (
                keys.pending,
                keys.active,
                keys.delayed,
                keys.dead,
                keys.done,
                keys.counters,
                keys.jobs,
                keys.workers,
            ),
            (int(WORKER_TTL_S * 1000),),
        )
    now, pending, active, delayed, dead, done, oldest, live, *counters = (int(x) for x in raw)
    enqueued, completed, retried, dead_lettered, recovered = counters
    return QueueStats(
        pending=pending,
        processing=active,
        delayed=delayed,
        failed=dead,
        completed=completed,
        enqueued=enqueued,
        retried=retried,
        dead_lettered=dead_lettered,
        recovered=recovered,
        finished_records=done,
        oldest_pending_age_s=max(0.0, (now - oldest) / 1000) if oldest >= 0 else 0.0,
        workers=live,
    )
