"""The public face of the library: one client per process, shared by producers and workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, cast

from reliable_queue.claims import QueueOwner, claim, read_owner, release
from reliable_queue.connection import RedisClient, connect, redis_boundary
from reliable_queue.dead_letters import (
    DeadAdded,
    DeadLetter,
    DeadLetterCap,
    NewDeadLetter,
    add_dead,
    count_dead,
    list_dead,
    purge_dead,
    replay_dead,
)
from reliable_queue.errors import UsageError
from reliable_queue.history import Sample, read_history, record_history
from reliable_queue.job import split_envelope
from reliable_queue.keys import QUEUE_REGISTRY, QueueKeys, queue_from_dead_letter_name
from reliable_queue.policy import QueuePolicy
from reliable_queue.producing import NewJob, Producer, make_item
from reliable_queue.scripting import Scripts
from reliable_queue.stats import WORKER_TTL_S, QueueStats, read_queue_stats
from reliable_queue.working import (
    BatchHandler,
    JobHandler,
    StopCallable,
    Worker,
    WorkerOptions,
)


class QueueClient:
    """Enqueue, work, inspect. ``async with QueueClient.from_url(url) as client: ...``

    Its Redis connection is its own: what the queue keeps in Redis, and how, is the library's
    to change, so callers go through these methods (the plant's state has its own connection,
    ``conveyor_plant.PlantState``)."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)
        self._producer = Producer(redis, self._scripts)

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False) -> QueueClient:
        return cls(connect(url, cluster=cluster))

    async def __aenter__(self) -> QueueClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> None:
        """Raise QueueUnavailable unless Redis answers."""
        with redis_boundary("ping Redis"):
            await self._redis.ping()

    @property
    def duplicates_skipped(self) -> int:
        """Jobs this client did not queue because the same job id was still alive."""
        return self._producer.duplicates

    # --- producing ----------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        data: Any,
        *,
        priority: int | None = None,
        delay: float = 0,
        job_id: str | None = None,
    ) -> str:
        """Queue one job and return its id once Redis has it.

        Higher ``priority`` runs first (-1000..1000; None: the queue's ``default_priority``,
        0 unless its policy sets one); ``delay`` in seconds. A ``job_id`` that is
        still alive (pending, delayed, running or dead-lettered) is not queued again.
        Concurrent calls are sent together, so calling this per message is fast.
        """
        item = make_item(data, priority=priority, delay=delay, job_id=job_id)
        await self._producer.submit_one(_queue(queue), item)
        return item.job_id

    async def enqueue_many(
        self,
        queue: str,
        items: Iterable[Any],
        *,
        priority: int | None = None,
        delay: float = 0,
    ) -> list[str]:
        """Queue many jobs in as few round trips as possible; returns their ids in order.

        Each item is the job's data, or a :class:`NewJob` carrying its own priority, delay or id;
        ``priority`` is for the others (None: the queue's ``default_priority``).
        """
        made = []
        for it in items:
            if isinstance(it, NewJob):
                made.append(
                    make_item(
                        it.data,
                        priority=priority if it.priority is None else it.priority,
                        delay=delay if it.delay is None else it.delay,
                        job_id=it.job_id,
                    )
                )
            else:
                made.append(make_item(it, priority=priority, delay=delay, job_id=None))
        await self._producer.send(_queue(queue), made)
        return [m.job_id for m in made]

    # --- working ------------------------------------------------------------------------------

    def worker(
        self,
        queue: str,
        handler: JobHandler | BatchHandler,
        *,
        concurrency: int = 1,
        batch_size: int | None = None,
        drain_timeout: float = 20.0,
        heartbeat_interval: float = 1.0,
        timeout_s: float | None = None,
        worker_id: str | None = None,
    ) -> Worker:
        """A worker, not yet started. With ``batch_size`` the handler takes a list of jobs.

        ``timeout_s``: an attempt (a batch) running longer is cancelled and fails with reason
        ``timeout``, unless the queue's policy sets its own ``timeout_s``; None: no timeout.
        ``worker_id``: how it is known in the queue's heartbeats (default ``<host name>:<pid>``;
        the operator reads the host name as the worker's pod).
        """
        if concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        if batch_size is not None and batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        options = WorkerOptions(
            concurrency=concurrency,
            batch_size=batch_size or 1,
            drain_timeout=drain_timeout,
            heartbeat_interval=heartbeat_interval,
            timeout_s=timeout_s,
        )
        if worker_id:
            options = dataclasses.replace(options, worker_id=worker_id)
        return Worker(
            redis=self._redis,
            scripts=self._scripts,
            queue=_queue(queue),
            handler=handler,
            batch=batch_size is not None,
            options=options,
        )

    async def start_worker(
        self,
        queue: str,
        handler: JobHandler | BatchHandler,
        *,
        concurrency: int = 1,
        batch_size: int | None = None,
        drain_timeout: float = 20.0,
        timeout_s: float | None = None,
    ) -> StopCallable:
        """Start a worker in this event loop; returns ``stop``, to await for a clean drain."""
        worker = self.worker(
            queue,
            handler,
            concurrency=concurrency,
            batch_size=batch_size,
            drain_timeout=drain_timeout,
            timeout_s=timeout_s,
        )
        await self._producer.register(worker.queue)
        await worker.start()
        return worker.stop

    # --- inspecting ---------------------------------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue that has been used, sorted."""
        with redis_boundary("list queues"):
            names = cast(set[bytes], await self._redis.smembers(QUEUE_REGISTRY))
        return sorted(n.decode() for n in names)

    async def queue_stats(self, queue: str) -> QueueStats:
        return await read_queue_stats(self._scripts, _queue(queue))

    async def record_history(
        self, stats: dict[str, Any], *, interval_s: float, keep_s: float
    ) -> None:
        """Add a :meth:`stats` document to each of its queues' history
        (:mod:`reliable_queue.history`: one sample per ``interval_s`` kept ``keep_s``, and one a
        minute kept a day)."""
        await record_history(self._scripts, stats["queues"], interval_s=interval_s, keep_s=keep_s)

    async def history(
        self, queues: Sequence[str], *, seconds: float, keep_s: float, first_only: bool = False
    ) -> tuple[float, dict[str, list[Sample]]]:
        """Redis's time now, and each queue's samples of the ``seconds`` before it, oldest
        first: every ``interval_s`` if ``seconds`` is within ``keep_s``, else every minute
        (``first_only``: the oldest only)."""
        names = [_queue(q) for q in queues]
        fine = seconds <= keep_s
        return await read_history(
            self._redis, names, seconds=seconds, fine=fine, first_only=first_only
        )

    async def jobs_held(self, queue: str) -> dict[str, int]:
        """``{worker id: jobs it holds}`` for each live worker of ``queue`` (a heartbeat in
        the last ``WORKER_TTL_S``), as of its last heartbeat (about a second old). A worker id
        is ``<host name>:<pid>``: in a pod, the host name is the pod's name."""
        k = QueueKeys.for_queue(_queue(queue))
        with redis_boundary(f"read the jobs each worker of {queue!r} holds"):
            raw = await self._scripts.run("held", (k.workers, k.held), (int(WORKER_TTL_S * 1000),))
        return {worker.decode(): int(n) for worker, n in zip(raw[::2], raw[1::2], strict=True)}

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"queues": {name: {...}}, "workers": "running" | "stopped"}``."""
        names = list(queues) if queues is not None else await self.queues()
        per_queue = {name: (await self.queue_stats(name)).to_dict() for name in names}
        running = any(q["workers"] > 0 for q in per_queue.values())
        return {"queues": per_queue, "workers": "running" if running else "stopped"}

    async def job_state(self, queue: str, job_id: str) -> str | None:
        """Where a job is: pending, delayed, processing, dead, finished; None if unknown."""
        k = QueueKeys.for_queue(_queue(queue))
        with redis_boundary("look up a job"):
            pipe = self._redis.pipeline(transaction=False)
            for key in (k.pending, k.delayed, k.active, k.dead, k.done):
                pipe.zscore(key, job_id)
            scores = await pipe.execute()
        for state, score in zip(
            ("pending", "delayed", "processing", "dead", "finished"), scores, strict=True
        ):
            if score is not None:
                return state
        return None

    async def job_data(self, queue: str, job_id: str) -> Any:
        """The data of a job still stored (alive, dead or a finished record), else None."""
        from pydantic_core import from_json

        with redis_boundary("read a job"):
            key = QueueKeys.for_queue(_queue(queue)).jobs
            env = cast(bytes | None, await self._redis.hget(key, job_id))
        return None if env is None else from_json(split_envelope(env)[2])

    # --- dead letters -------------------------------------------------------------------------

    async def dead_letters(
        self, queue: str, *, offset: int = 0, limit: int = 100
    ) -> list[DeadLetter]:
        """The dead letters of ``queue`` (``dead:<queue>`` also accepted), newest first."""
        return await list_dead(self._redis, _queue(queue), offset=offset, limit=limit)

    async def add_dead_letters(
        self, queue: str, letters: Sequence[NewDeadLetter], *, cap: DeadLetterCap | None = None
    ) -> DeadAdded:
        """Park items that never became jobs (bad input) in ``dead:<queue>``; with ``cap``,
        evict the oldest letters beyond it. Returns how many were added and evicted."""
        await self._producer.register(_queue(queue))
        return await add_dead(self._scripts, _queue(queue), letters, cap=cap)

    async def dead_letter_count(self, queue: str) -> int:
        return await count_dead(self._redis, _queue(queue))

    async def replay_dead_letters(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Back to pending with fresh attempts; every dead letter when ``job_ids`` is None."""
        return await replay_dead(self._scripts, _queue(queue), job_ids)

    async def purge_dead_letters(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters for good; every one when ``job_ids`` is None."""
        return await purge_dead(self._scripts, _queue(queue), job_ids)

    # --- policy -------------------------------------------------------------------------------

    async def get_policy(self, queue: str) -> QueuePolicy:
        k = QueueKeys.for_queue(_queue(queue))
        with redis_boundary("read a queue policy"):
            raw = cast(dict[bytes, bytes], await self._redis.hgetall(k.config))
        return QueuePolicy.from_redis(raw)

    async def set_policy(self, queue: str, **changes: Any) -> QueuePolicy:
        """Change policy fields; workers apply them within a heartbeat (about a second).
        A field changed to None (``concurrency``, ``timeout_s``) is unset."""
        current = await self.get_policy(queue)
        policy = current.merged(**changes)
        await self.replace_policy(queue, policy)
        return policy

    async def replace_policy(self, queue: str, policy: QueuePolicy) -> None:
        """Write every field of ``policy``, whatever the queue had (its fields unset in
        ``policy`` are deleted); workers apply it within a heartbeat."""
        k = QueueKeys.for_queue(_queue(queue))
        with redis_boundary("write a queue policy"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(k.config, mapping=policy.to_redis())  # type: ignore[arg-type]
            if unset := policy.unset_fields():
                pipe.hdel(k.config, *unset)
            pipe.sadd(QUEUE_REGISTRY, k.queue)
            await pipe.execute()

    # --- ownership ----------------------------------------------------------------------------

    async def claim_queue(
        self, queue: str, owner: QueueOwner, *, replacing: str | None = None
    ) -> QueueOwner:
        """Claim ``queue`` for ``owner`` unless another owner holds it; returns the owner now
        (``owner.same_as(result)`` tells whether it is the caller). ``replacing``: the uid of an
        owner known to be gone, whose claim is taken over if it still holds it."""
        return await claim(self._scripts, _queue(queue), owner, replacing=replacing)

    async def release_queue(self, queue: str, owner: QueueOwner) -> bool:
        """Give up ``owner``'s claim; False (and nothing changes) if the claim is not its."""
        return await release(self._scripts, _queue(queue), owner)

    async def queue_owner(self, queue: str) -> QueueOwner | None:
        """Who owns ``queue``; None if nobody has claimed it."""
        return await read_owner(self._redis, _queue(queue))

    async def delete_queue(self, queue: str) -> None:
        """Delete every key of a queue: its jobs, dead letters, counters and policy (not its
        claim: see :meth:`release_queue`)."""
        k = QueueKeys.for_queue(_queue(queue))
        with redis_boundary(f"delete queue {k.queue!r}"):
            await self._redis.delete(*k.all())
            await self._redis.srem(QUEUE_REGISTRY, k.queue)


def _queue(name: str) -> str:
    return QueueKeys.for_queue(queue_from_dead_letter_name(name)).queue
