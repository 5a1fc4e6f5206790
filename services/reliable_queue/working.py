"""The worker: claims jobs under leases, runs a handler on each, and settles the outcome.

One loop per worker process claims as many jobs as it has free slots (highest priority
first), runs each in a task, and acknowledges finished jobs in batches before claiming again.
When the queue is empty it blocks on the queue's wake list (``BLPOP``), which every enqueue
pushes to, so an idle worker reacts within a round trip without polling.

A heartbeat task, about once a second: re-reads the queue policy from Redis (concurrency and
retry settings change live), says how many jobs the worker holds (the operator removes the
busiest pods last; so a worker also beats within 0.2 s of going idle), renews the leases of
jobs in flight, and runs the reaper, which returns expired leases of crashed workers to
pending. Only one worker per interval reaps, thanks to a lock with a TTL.

An attempt that runs past the queue's timeout (``timeout_s`` in its policy, else the worker's
``default_timeout_s``) is cancelled and fails with :class:`JobTimeout`; see ``timeouts``, also
for blocking calls: a hung ``asyncio.to_thread`` frees its slot while its thread runs on, so
give such calls their own timeout. Leases are renewed per attempt (job id and claim token), so
a late handler of one attempt never touches its job's retry. Loops that retry Redis wait
through a :class:`Backoff` with jitter.

``stop()`` stops claiming, lets running handlers finish within ``drain_timeout`` (keep it
below the pod's ``terminationGracePeriodSeconds``), then cancels the rest and gives their jobs
back to pending at their place in line, without counting an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reliable_queue.backoff import Backoff
from reliable_queue.cancelling import cancel_and_wait
from reliable_queue.connection import RedisClient, redis_boundary
from reliable_queue.errors import (
    JobTimeout,
    PermanentError,
    Postpone,
    QueueUnavailable,
    ReliableQueueError,
    Retry,
    UsageError,
)
from reliable_queue.job import Job, decode_envelope
from reliable_queue.keys import QueueKeys
from reliable_queue.policy import MAX_TIMEOUT_S, QueuePolicy, decide_on_failure
from reliable_queue.scripting import Scripts
from reliable_queue.timeouts import (
    RenewalDeadlines,
    finish_within,
    report_ignored_cancellation,
    report_renewals_ended,
)

log = logging.getLogger(__name__)
IDLE_BEAT_S = 0.2
"""The soonest a worker beats after it went idle: at most five extra beats a second."""
OUTAGE_PAUSE_FIRST_S = 1.0
OUTAGE_PAUSE_MAX_S = 30.0
"""A worker whose handler reports an outage (:class:`Postpone`) claims nothing for a pause that
doubles from the first to the most with each outage in a row (jittered); the jobs it held
wait as long. The most bounds how late a worker notices that the service is back."""


class JobHandler(Protocol):
    """Processes one job. Returning acknowledges it; raising fails the attempt."""

    def __call__(self, job: Job, /) -> Awaitable[object]: ...


class BatchHandler(Protocol):
    """Processes a batch of jobs. Raising fails them all; returning a mapping of job id to
    exception fails just those jobs and acknowledges the rest."""

    def __call__(self, jobs: Sequence[Job], /) -> Awaitable[Mapping[str, Exception] | None]: ...


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs. ``concurrency`` counts units: jobs, or batches for batch handlers.

    ``timeout_s``: the default timeout of one attempt (one batch) when the queue's policy sets
    none; ``timeout_grace``: how long past it a job's lease is still renewed.
    """

    concurrency: int = 1
    batch_size: int = 1
    drain_timeout: float = 20.0
    timeout_s: float | None = None
    timeout_grace: float = 5.0
    heartbeat_interval: float = 1.0
    idle_block: float = 1.0
    reap_limit: int = 1000
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass(slots=True)
class WorkerCounters:
    """What one worker did, for logs and metrics."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    leases_lost: int = 0
    recovered: int = 0
    timed_out: int = 0
    postponed: int = 0
    """Failures that were outages (:class:`Postpone`): tried again later, attempts kept."""
    released: int = 0
    """Jobs given back to pending unfinished at ``stop()`` (past the drain timeout)."""


class Worker:
    """Runs ``handler`` on the jobs of ``queue``. Create with ``QueueClient.worker()``."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        scripts: Scripts,
        queue: str,
        handler: JobHandler | BatchHandler,
        batch: bool,
        options: WorkerOptions,
    ) -> None:
        self.queue = queue
        self.options = options
        self.counters = WorkerCounters()
        self.policy = QueuePolicy()
        self._redis = redis
        self._scripts = scripts
        self._keys = QueueKeys.for_queue(queue)
        self._handler = handler
        self._batch = batch
        self._concurrency = options.concurrency
        self._held: dict[str, Job] = {}  # claimed and not yet settled
        self._deadlines = RenewalDeadlines()
        self._default_timeout = _check_timeout(options.timeout_s)
        self._acks: list[Job] = []
        self._units: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()
        self._went_idle = asyncio.Event()  # beat early: the operator spares busy pods by it
        self._reported_held = 0  # what the last heartbeat said this worker holds
        self._last_reap = 0.0
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._wake_task: asyncio.Task[Any] | None = None
        self._last_renew = 0.0
        self._outage = Backoff(first=OUTAGE_PAUSE_FIRST_S, cap=OUTAGE_PAUSE_MAX_S)
        self._paused_until = 0.0
        """While a handler reports an outage: claim nothing before this (monotonic) time."""

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def holding(self) -> int:
        """Jobs claimed and not yet settled (what the heartbeat reports as held)."""
        return len(self._held)

    @property
    def timeout_s(self) -> float | None:
        """The timeout of the next attempt: the queue policy's, else :attr:`default_timeout_s`."""
        return self.policy.timeout_s or self._default_timeout

    @property
    def default_timeout_s(self) -> float | None:
        """The timeout used while the queue's policy sets none (None: no timeout)."""
        return self._default_timeout

    @default_timeout_s.setter
    def default_timeout_s(self, seconds: float | None) -> None:
        self._default_timeout = _check_timeout(seconds)

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        await self._beat()  # policy first, so the first claim uses the live concurrency
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"claim:{self.queue}")
        self._beat_task = asyncio.create_task(self._beat_loop(), name=f"beat:{self.queue}")
        log.info(
            "worker started on queue %s with concurrency %d, batches of up to %d",
            self.queue,
            self._concurrency,
            self.options.batch_size,
            extra={"queue": self.queue, "worker": self.options.worker_id},
        )

    async def stop(self) -> None:
        """Stop claiming, drain within ``drain_timeout``, release what is left."""
        if self._stopping:
            return
        self._stopping = True
        self._progress.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._units:
            _, late = await asyncio.wait(set(self._units), timeout=self.options.drain_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                log.warning(
                    "%d handler(s) on %s did not finish within %.0fs; their jobs go back",
                    len(late),
                    self.queue,
                    self.options.drain_timeout,
                    extra={"queue": self.queue},
                )
        backoff = Backoff(first=0.2, cap=1.0)
        for _ in range(3):
            try:
                await self._flush_acks()
                break
            except QueueUnavailable:
                await backoff.sleep()
        await self._release_held()
        tasks: list[asyncio.Task[Any] | None] = [self._beat_task, self._wake_task]
        for helper in tasks:
            if helper is not None:
                await cancel_and_wait(helper)
        try:
            with redis_boundary("deregister worker"):
                await self._redis.zrem(self._keys.workers, self.options.worker_id)
                await self._redis.hdel(self._keys.held, self.options.worker_id)
        except QueueUnavailable:
            pass
        log.info("worker on %s stopped", self.queue, extra={"queue": self.queue})

    # --- claiming -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = Backoff(first=0.05, cap=5.0)
        while not self._stopping:
            try:
                await self._flush_acks()
                free = self._concurrency - len(self._units)
                if free <= 0:
                    await self._wait_progress(None)
                    continue
                if (pause := self._paused_until - time.monotonic()) > 0:
                    await self._wait_progress(pause)  # an outage: the next jobs would fail too
                    continue
                jobs, due_in = await self._claim(free * self.options.batch_size)
                backoff.reset()
                if jobs:
                    self._dispatch(jobs)
                else:
                    await self._idle(due_in)
            except QueueUnavailable as exc:
                log.warning(
                    "%s; retrying in %.2fs", exc, backoff.peek(), extra={"queue": self.queue}
                )
                await self._wait_progress(backoff.take())
            except Exception:
                log.exception(
                    "worker loop error on %s; retrying in %.2fs", self.queue, backoff.peek()
                )
                await self._wait_progress(backoff.take())

    async def _claim(self, n: int) -> tuple[list[Job], float | None]:
        k = self._keys
        with redis_boundary(f"claim jobs from {self.queue!r}"):
            raw = await self._scripts.run(
                "claim",
                (k.pending, k.delayed, k.active, k.jobs, k.leases, k.fails, k.counters, k.wake),
                (n, int(self.policy.lease_s * 1000), self.options.reap_limit),
            )
        now_ms, next_due = int(raw[0]), int(raw[1])
        jobs = [
            decode_envelope(
                queue=self.queue,
                job_id=raw[i],
                token=raw[i + 1],
                envelope=raw[i + 2],
                fails=raw[i + 3],
            )
            for i in range(2, len(raw), 4)
        ]
        return jobs, (max(0, next_due - now_ms) / 1000 if next_due >= 0 else None)

    def _dispatch(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._held[job.id] = job
        size = self.options.batch_size
        for start in range(0, len(jobs), size):
            task = asyncio.create_task(self._run_unit(jobs[start : start + size]))
            self._units.add(task)

    async def _idle(self, due_in: float | None) -> None:
        timeout = (
            self.options.idle_block if due_in is None else min(due_in, self.options.idle_block)
        )
        if timeout <= 0.001:
            return
        if self._wake_task is None or self._wake_task.done():
            if self._wake_task is not None:
                _consume(self._wake_task)
            self._wake_task = asyncio.create_task(self._block_for_wake(timeout))
        progress = asyncio.create_task(self._progress.wait())
        await asyncio.wait({self._wake_task, progress}, return_when=asyncio.FIRST_COMPLETED)
        progress.cancel()
        self._progress.clear()
        if self._wake_task.done():
            _consume(self._wake_task)

    async def _block_for_wake(self, timeout: float) -> None:
        with redis_boundary(f"wait for jobs on {self.queue!r}"):
            await self._redis.blpop([self._keys.wake], timeout=max(0.01, timeout))

    async def _wait_progress(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)
        self._progress.clear()

    # --- running and settling -----------------------------------------------------------------

    async def _run_unit(self, jobs: list[Job]) -> None:
        timeout = self.timeout_s
        started = time.monotonic()
        attempts = [(j.id, j.token) for j in jobs]
        if timeout is not None:
            until = started + timeout + self.options.timeout_grace
            self._deadlines.start(attempts, until=until)
        call = asyncio.ensure_future(self._call(jobs))
        try:
            # Cancelled while waiting (stopping): the jobs stay held and are released.
            if await finish_within(call, timeout):
                await self._settle_unit(jobs, call)
                return
            assert timeout is not None
            self.counters.timed_out += len(jobs)
            expired = JobTimeout(queue=self.queue, timeout_s=timeout, batch=self._batch)
            for job in jobs:
                await self._settle_failure(job, expired)
            if not call.done():
                report_ignored_cancellation(self.queue, [j.id for j in jobs], timeout)
                await asyncio.wait({call})  # its slot is not free until it returns
                log.info(
                    "the handler of job %s on %s returned %.0fs after it started; its slot is "
                    "free again",
                    jobs[0].id,
                    self.queue,
                    time.monotonic() - started,
                    extra={"queue": self.queue, "job_id": jobs[0].id},
                )
            _consume(call)
        finally:
            for attempt in attempts:  # not the job ids: a retry may run in another slot
                self._deadlines.forget(attempt)
            task = asyncio.current_task()
            if task is not None:
                self._units.discard(task)
            self._progress.set()

    async def _call(self, jobs: list[Job]) -> object:
        if self._batch:
            return await self._handler(jobs)  # type: ignore[arg-type]
        return await self._handler(jobs[0])  # type: ignore[arg-type]

    async def _settle_unit(self, jobs: list[Job], call: asyncio.Future[Any]) -> None:
        """Settle the jobs of a handler call that finished (returned or raised)."""
        if call.cancelled():  # cancelled by something inside the handler, not by us
            error: BaseException | None = RuntimeError("the handler was cancelled")
        else:
            error = call.exception()
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: not the job's failure
        if error is not None:  # any handler error fails the attempt
            for job in jobs:
                await self._settle_failure(job, error)
            return
        result = call.result()
        failed = result if self._batch and isinstance(result, Mapping) else {}
        for job in jobs:
            if job.id in failed:
                await self._settle_failure(job, failed[job.id])
            else:
                self._acks.append(job)

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        k = self._keys
        args: list[Any] = [self.policy.done_max_count, int(self.policy.done_max_age_s * 1000)]
        for job in acks:
            args += (job.id, job.token)
        try:
            with redis_boundary(f"acknowledge jobs of {self.queue!r}"):
                flags = await self._scripts.run(
                    "ack",
                    (
                        *(k.active, k.leases, k.fails, k.lost, k.errors, k.jobs, k.done),
                        *(k.counters, k.outages),
                    ),
                    args,
                )
        except QueueUnavailable:
            self._acks[:0] = acks  # keep them; the next loop turn tries again
            raise
        for job, flag in zip(acks, flags, strict=True):
            self._unhold(job)
            if flag:
                self.counters.processed += 1
                self._outage.reset()  # jobs went through: the next outage pauses briefly first
            else:
                self._lease_lost(job, "finished")

    def _pause_for(self, exc: Postpone) -> None:
        """Claim nothing for a while: the outage would fail the next jobs too. Units failed by
        the same outage share one pause; a new one doubles (jittered) up to the most."""
        now = time.monotonic()
        if self._paused_until > now:
            return
        pause = min(exc.delay, OUTAGE_PAUSE_MAX_S) if exc.delay is not None else self._outage.take()
        self._paused_until = now + pause
        log.warning(
            "%s; claiming nothing of %s for %.1fs: the jobs it failed wait at their place in "
            "line, their attempts kept (for the queue's outage_max_s, %.0fs, after a job's "
            "first postponement)",
            exc,
            self.queue,
            pause,
            self.policy.outage_max_s,
            extra={"queue": self.queue},
        )

    async def _settle_failure(self, job: Job, exc: Exception) -> None:
        override = exc.delay if isinstance(exc, Retry) else None
        if outage := isinstance(exc, Postpone):
            self._pause_for(exc)
        decision = decide_on_failure(
            self.policy,
            attempt=job.attempt,
            permanent=isinstance(exc, PermanentError),
            delay_override=override,
            timed_out=isinstance(exc, JobTimeout),
        )
        k = self._keys
        args = (
            job.id,
            job.token,
            describe_error(exc),
            decision.action,
            int(decision.delay_s * 1000),
            decision.reason,
            self.policy.dead_max_count,
            "1" if outage else "0",
            int(self.policy.outage_max_s * 1000),
        )
        keys = (
            k.active,
            k.leases,
            k.fails,
            k.lost,
            k.errors,
            k.jobs,
            k.delayed,
            k.dead,
            k.dead_info,
            k.counters,
            k.outages,
            k.pending,
            k.wake,
        )
        backoff = Backoff(first=0.05, cap=5.0)
        while True:
            try:
                with redis_boundary(f"record a failed job of {self.queue!r}"):
                    applied, _ = await self._scripts.run("fail", keys, args)
                break
            except QueueUnavailable as exc_redis:
                if self._stopping:
                    return  # the lease expires and the reaper returns the job
                log.warning(
                    "%s; retrying in %.2fs", exc_redis, backoff.peek(), extra={"queue": self.queue}
                )
                await backoff.sleep()
        self._unhold(job)
        if not applied:
            self._lease_lost(job, "failed")
            return
        extra = {"queue": self.queue, "job_id": job.id, "attempt": job.attempt}
        if applied == 2:
            self.counters.postponed += 1
            log.debug("job %s postponed (%s)", job.id, exc, extra=extra)
            return
        self.counters.failed += 1
        if outage:
            log.warning(
                "job %s has waited out outages for longer than the queue's outage_max_s "
                "(%.0fs): this one counts as a failed attempt",
                job.id,
                self.policy.outage_max_s,
                extra=extra,
            )
        if decision.action == "retry":
            self.counters.retried += 1
            log.info(
                "job %s failed (%s); retry in %.1fs", job.id, exc, decision.delay_s, extra=extra
            )
        else:
            self.counters.dead_lettered += 1
            log.warning(
                "job %s moved to dead:%s (%s): %s",
                job.id,
                self.queue,
                decision.reason,
                exc,
                extra=extra,
            )

    def _unhold(self, job: Job) -> None:
        """Forget this attempt, not a later claim of the same job (its lease lapsed meanwhile
        and this worker claimed it again)."""
        if (held := self._held.get(job.id)) is not None and held.token == job.token:
            del self._held[job.id]
            if not self._held and self._reported_held:
                self._went_idle.set()  # only when Redis still says busy

    def _lease_lost(self, job: Job, outcome: str) -> None:
        self.counters.leases_lost += 1
        log.warning(
            "job %s %s after its lease expired; the result is not recorded and the job runs "
            "again elsewhere (raise lease_s if handlers take longer than %.0fs)",
            job.id,
            outcome,
            self.policy.lease_s,
            extra={"queue": self.queue, "job_id": job.id},
        )

    async def _release_held(self) -> None:
        if not self._held:
            return
        args: list[str] = []
        for job in self._held.values():
            args += (job.id, job.token)
        k = self._keys
        try:
            with redis_boundary(f"release jobs of {self.queue!r}"):
                n = await self._scripts.run(
                    "release", (k.active, k.leases, k.pending, k.wake), args
                )
            self.counters.released += int(n)
            log.info("released %d unfinished job(s) back to %s", n, self.queue)
        except QueueUnavailable as exc:
            log.warning("%s; the leases expire and the reaper returns the jobs", exc)
        self._held.clear()

    # --- heartbeat: policy, leases, reaper ----------------------------------------------------

    async def _beat_loop(self) -> None:
        interval = self.options.heartbeat_interval
        while True:
            # Every interval, and soon after the worker holds nothing any more (at most every
            # IDLE_BEAT_S), so that a scale-in does not take a just-idle pod for a busy one.
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._went_idle.wait(), interval)
            self._went_idle.clear()
            await asyncio.sleep(max(0.0, min(IDLE_BEAT_S, interval) - (time.monotonic() - started)))
            try:
                await self._beat()
            except ReliableQueueError as exc:
                log.warning("heartbeat failed: %s", exc, extra={"queue": self.queue})

    async def _beat(self) -> None:
        k = self._keys
        forget_ms = int(max(60.0, self.options.heartbeat_interval * 30) * 1000)
        held = self._reported_held = self.holding
        with redis_boundary(f"heartbeat on {self.queue!r}"):
            raw = await self._scripts.run(
                "beat", (k.workers, k.config, k.held), (self.options.worker_id, forget_ms, held)
            )
        self._apply_policy(QueuePolicy.from_redis(dict(zip(raw[::2], raw[1::2], strict=True))))
        now = time.monotonic()
        if self._held and now - self._last_renew >= self.policy.lease_s / 3:
            await self._renew()
        # Early beats (on going idle) do not add reaps: at most one per interval.
        if now - self._last_reap >= self.options.heartbeat_interval * 0.9:
            self._last_reap = now
            await self._reap()

    def _apply_policy(self, policy: QueuePolicy) -> None:
        wanted = policy.concurrency or self.options.concurrency
        if wanted != self._concurrency:
            log.info(
                "concurrency of %s changed from %d to %d",
                self.queue,
                self._concurrency,
                wanted,
                extra={"queue": self.queue},
            )
            self._concurrency = wanted
            self._progress.set()
        self.policy = policy

    async def _renew(self) -> None:
        held = ((job.id, job.token) for job in self._held.values())
        renew, over = self._deadlines.renewable(held, now=time.monotonic())
        for job_id, _ in over:
            report_renewals_ended(self.queue, job_id, self.options.timeout_grace)
        args: list[Any] = [int(self.policy.lease_s * 1000)]
        for attempt in renew:
            args += attempt
        with redis_boundary(f"renew leases on {self.queue!r}"):
            lost = await self._scripts.run("renew", (self._keys.active, self._keys.leases), args)
        self._last_renew = time.monotonic()
        for raw_id in lost:
            job_id = raw_id.decode()
            if job_id in self._held:
                log.warning(
                    "lost the lease of job %s (this worker was too slow to renew it)",
                    job_id,
                    extra={"queue": self.queue, "job_id": job_id},
                )

    async def _reap(self) -> None:
        k, p = self._keys, self.policy
        # At most one reap a second across all workers of the queue, however slow this
        # worker's own heartbeat is.
        lock_ms = int(min(self.options.heartbeat_interval, 1.0) * 1000)
        with redis_boundary(f"reap expired leases on {self.queue!r}"):
            _, recovered, buried, _ = await self._scripts.run(
                "reap",
                (
                    k.reaper_lock,
                    k.active,
                    k.leases,
                    k.lost,
                    k.fails,
                    k.errors,
                    k.pending,
                    k.delayed,
                    k.jobs,
                    k.dead,
                    k.dead_info,
                    k.done,
                    k.counters,
                    k.wake,
                    k.outages,
                ),
                (
                    lock_ms,
                    self.options.worker_id,
                    p.max_recoveries,
                    self.options.reap_limit,
                    p.dead_max_count,
                    int(p.dead_max_age_s * 1000),
                    p.done_max_count,
                    int(p.done_max_age_s * 1000),
                ),
            )
        if recovered or buried:
            self.counters.recovered += int(recovered)
            log.warning(
                "returned %d job(s) of crashed workers to %s, dead-lettered %d that kept "
                "losing their worker",
                recovered,
                self.queue,
                buried,
                extra={"queue": self.queue},
            )


def describe_error(exc: BaseException, *, frames: int = 3, limit: int = 4000) -> str:
    """``Type: message`` and the last few frames, for dead letters and logs."""
    text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)[-frames:]
    if tb:
        text += "\n" + "".join(f"  at {f.filename}:{f.lineno} in {f.name}\n" for f in tb)
    return text[:limit]


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's exception so asyncio does not warn about it."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("task ended with %s", task.exception())


def _check_timeout(seconds: float | None) -> float | None:
    if seconds is not None and not 0 < seconds <= MAX_TIMEOUT_S:
        raise UsageError(
            f"a job timeout must be above 0 and at most {MAX_TIMEOUT_S:.0f} s, not {seconds}"
        )
    return seconds


StopCallable = Callable[[], Awaitable[None]]
