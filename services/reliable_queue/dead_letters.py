"""Dead letters (``dead:<queue>``): jobs that exhausted their retries, failed permanently or
kept losing their worker. Each keeps its payload, attempts, last error and timestamps, so a
person can read why it died, fix the cause and replay it.

Letters added straight from outside (:func:`add_dead`, the ingestor's ``dead:ingest``) can be
capped by a :class:`DeadLetterCap`, in count and in bytes: the oldest are evicted first, so a
flood of bad input costs a bounded share of Redis and the newest letters are the ones kept.
Worker queues' letters are capped by their policy (``dead_max_count``, ``dead_max_age_s``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, cast

from pydantic_core import from_json

from reliable_queue.connection import RedisClient, redis_boundary
from reliable_queue.job import encode_payload, new_job_id, split_envelope
from reliable_queue.keys import QueueKeys
from reliable_queue.scripting import Scripts

SLICE = 1000
"""Ids per script call when replaying or purging everything, so Redis is never held long."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead job. ``reason``: ``retries_exhausted``, ``permanent``, ``timeout``
    (its last attempt ran past the queue's timeout) or ``lost``."""

    id: str
    queue: str
    data: Any
    priority: int
    attempts: int
    recoveries: int
    reason: str
    error: str
    enqueued_at: float
    failed_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def list_dead(
    redis: RedisClient, queue: str, *, offset: int = 0, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters, newest first."""
    keys = QueueKeys.for_queue(queue)
    with redis_boundary(f"list dead letters of {queue!r}"):
        stop = offset + max(0, limit) - 1
        ids = cast(list[bytes], await redis.zrevrange(keys.dead, offset, stop))
        if not ids:
            return []
        envelopes = cast(list[bytes | None], await redis.hmget(keys.jobs, ids))
        infos = cast(list[bytes | None], await redis.hmget(keys.dead_info, ids))
    letters = []
    for raw_id, env, info in zip(ids, envelopes, infos, strict=True):
        if env is None:  # purged between the two reads
            continue
        enqueued_at, priority, payload = split_envelope(env)
        meta = json.loads(info) if info else {}
        letters.append(
            DeadLetter(
                id=raw_id.decode(),
                queue=queue,
                data=_decode(payload),
                priority=priority,
                attempts=int(meta.get("attempts", 0)),
                recoveries=int(meta.get("recoveries", 0)),
                reason=str(meta.get("reason", "")),
                error=str(meta.get("error", "")),
                enqueued_at=enqueued_at,
                failed_at=int(meta.get("failed_at", 0)) / 1000,
            )
        )
    return letters


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """Something that could not become a job, parked for a person: ``reason`` is a short tag,
    ``error`` says what was wrong and what to do."""

    data: Any
    reason: str
    error: str
    job_id: str | None = None


LETTER_OVERHEAD_BYTES = 200
"""What Redis spends on one dead letter besides its strings: a ZSET entry and two hash entries
with their share of the tables (about 160 bytes measured on Redis 7, 64-bit; see
``tests/queue/test_memory_budget.py``). Counted in every letter's weight, with each string
rounded as the allocator rounds it, so that :attr:`DeadLetterCap.max_bytes` bounds the memory
Redis uses, not only the payloads."""


@dataclass(frozen=True, slots=True)
class DeadLetterCap:
    """Bounds :func:`add_dead` applies after adding: beyond either, the oldest letters are
    evicted (and counted in the queue's ``dead_evicted`` counter). 0 means no bound.

    ``max_bytes`` counts each letter's payload envelope, its reason/error record and its id,
    as allocated, and :data:`LETTER_OVERHEAD_BYTES`: Redis memory, within a few percent.
    Keeping the running total is O(1) per letter; after dead letters came or went by another
    path (purge, replay, a worker), the next call recounts the list once, O(letters).

    Unlike a queue policy's ``dead_max_count``, where 0 keeps none, 0 here means no bound.
    """

    max_count: int = 0
    max_bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_count < 0 or self.max_bytes < 0:
            raise ValueError("dead-letter caps must be 0 (none) or positive")


class DeadAdded(NamedTuple):
    """What :func:`add_dead` did: letters added (ids already there are not), and evicted."""

    added: int
    evicted: int


async def add_dead(
    scripts: Scripts,
    queue: str,
    letters: Sequence[NewDeadLetter],
    *,
    cap: DeadLetterCap | None = None,
) -> DeadAdded:
    """Put items straight into dead letters; an id already there is not added twice. With
    ``cap``, then evict the oldest letters beyond it."""
    keys = QueueKeys.for_queue(queue)
    cap = cap or DeadLetterCap()
    added = evicted = 0
    with redis_boundary(f"write dead letters of {queue!r}"):
        # An empty call still applies the cap (say, one just lowered).
        for start in range(0, max(len(letters), 1), SLICE):
            chunk = letters[start : start + SLICE]
            args: list[Any] = [len(chunk), cap.max_count, cap.max_bytes, LETTER_OVERHEAD_BYTES]
            for letter in chunk:
                args += (
                    letter.job_id or new_job_id(),
                    encode_payload(letter.data),
                    letter.reason,
                    letter.error,
                )
            done = await scripts.run(
                "dead_add",
                (
                    keys.jobs,
                    keys.dead,
                    keys.dead_info,
                    keys.counters,
                    keys.fails,
                    keys.lost,
                    keys.errors,
                ),
                args,
            )
            added += int(done[0])
            evicted += int(done[1])
    return DeadAdded(added, evicted)


async def count_dead(redis: RedisClient, queue: str) -> int:
    with redis_boundary(f"count dead letters of {queue!r}"):
        return int(await redis.zcard(QueueKeys.for_queue(queue).dead))


async def replay_dead(scripts: Scripts, queue: str, job_ids: Sequence[str] | None) -> int:
    """Move dead letters back to pending with fresh attempts; all of them when ids is None."""
    keys = QueueKeys.for_queue(queue)
    script_keys = (keys.dead, keys.dead_info, keys.jobs, keys.pending, keys.counters, keys.wake)
    return await _in_slices(scripts, "dead_replay", script_keys, queue, job_ids, "replay", len)


async def purge_dead(scripts: Scripts, queue: str, job_ids: Sequence[str] | None) -> int:
    """Delete dead letters and their payloads; all of them when ids is None."""
    keys = QueueKeys.for_queue(queue)
    return await _in_slices(
        scripts, "dead_purge", (keys.dead, keys.dead_info, keys.jobs), queue, job_ids, "purge", int
    )


async def _in_slices(
    scripts: Scripts,
    name: str,
    keys: Sequence[str],
    queue: str,
    job_ids: Sequence[str] | None,
    verb: str,
    count: Any,
) -> int:
    done = 0
    with redis_boundary(f"{verb} dead letters of {queue!r}"):
        if job_ids is None:
            while n := count(await scripts.run(name, keys, ("oldest", SLICE))):
                done += n
        else:
            for start in range(0, len(job_ids), SLICE):
                args = ("ids", 0, *job_ids[start : start + SLICE])
                done += count(await scripts.run(name, keys, args))
    return done


def _decode(payload: bytes) -> Any:
    try:
        return from_json(payload)
    except ValueError:
        return payload.decode(errors="replace")
