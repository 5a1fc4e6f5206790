"""A queue's figures over time, kept in Redis (``lua/history.lua``): every reader, a gateway
replica or one just restarted, sees the same history.

Two series per queue, each sample the figures of :class:`~reliable_queue.stats.QueueStats`
that move (depths, counters, the oldest pending job's age): one every ``interval_s`` kept
``keep_s`` (the caller's: the gateway samples every 2 s and keeps 10 minutes), and one every
minute kept a day (:data:`COARSE_S`, :data:`COARSE_KEEP_S`): at most ``keep_s / interval_s``
+ 1 and 1,441 samples per queue. Slots are aligned on Redis's clock, and the first sample of a
slot stands, so that samplers side by side neither double nor rewrite a series; each sample
carries when it was taken (Redis's clock too), and readers get Redis's time with it. A deleted
queue's history is not written again by a sampler late with its figures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reliable_queue.connection import RedisClient, redis_boundary
from reliable_queue.keys import QueueKeys
from reliable_queue.scripting import Scripts

COARSE_S = 60.0
COARSE_KEEP_S = 24 * 3600.0
FIGURES = (
    "pending",
    "processing",
    "delayed",
    "failed",
    "completed",
    "enqueued",
    "oldest_pending_age_s",
)
"""What a sample keeps of a queue's statistics."""


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    """When it was recorded, seconds since the epoch (Redis's clock)."""
    pending: int
    processing: int
    delayed: int
    failed: int
    completed: int
    enqueued: int
    oldest_pending_age_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def record_history(
    scripts: Scripts, stats: Mapping[str, Mapping[str, Any]], *, interval_s: float, keep_s: float
) -> None:
    """Add ``stats`` (``{queue: QueueStats.to_dict()}``, as ``QueueClient.stats()`` has them)
    to each queue's history."""
    with redis_boundary("record the queues' history"):
        for queue, figures in stats.items():
            keys = QueueKeys.for_queue(queue)
            sample = json.dumps({name: figures[name] for name in FIGURES}, separators=(",", ":"))
            await scripts.run(
                "history",
                (keys.history, keys.history_coarse, keys.counters),
                (
                    int(interval_s * 1000),
                    int(keep_s * 1000),
                    int(COARSE_S * 1000),
                    int(COARSE_KEEP_S * 1000),
                    sample,
                ),
            )


async def read_history(
    redis: RedisClient,
    queues: Sequence[str],
    *,
    seconds: float,
    fine: bool,
    first_only: bool = False,
) -> tuple[float, dict[str, list[Sample]]]:
    """Redis's time now, and each queue's samples of the ``seconds`` before it, oldest first:
    the fine series, else the coarse one (``first_only``: the oldest only)."""
    with redis_boundary("read the queues' history"):
        sec, usec = await redis.time()
        now = sec + usec / 1e6
        since = int((now - seconds) * 1000)
        pipe = redis.pipeline(transaction=False)
        for queue in queues:
            keys = QueueKeys.for_queue(queue)
            key = keys.history if fine else keys.history_coarse
            if first_only:
                pipe.zrangebyscore(key, since, "+inf", start=0, num=1)
            else:
                pipe.zrangebyscore(key, since, "+inf")
        found = await pipe.execute()
    samples = {q: [_sample(m) for m in members] for q, members in zip(queues, found, strict=True)}
    return now, samples


def _sample(member: bytes | str) -> Sample:
    text = member.decode() if isinstance(member, bytes) else member
    at, _, doc = text.partition("|")
    return Sample(at=int(at) / 1000, **json.loads(doc))
