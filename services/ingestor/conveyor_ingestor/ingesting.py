"""The ingestor: MQTT messages in, jobs in Redis out, PUBACKs only after Redis has them.

Messages wait in the subscriber's inbox; the ingestor takes them in batches (up to
``batch_size``, or what arrived within ``flush_interval`` of the first), validates and routes
each, enqueues each queue's share in one script call, parks what cannot be ingested in
``dead:ingest``, and only then acknowledges the batch to the broker, in arrival order.

When Redis is down the batch is retried with backoff and jitter (so the replicas of a
restarted Redis do not meet it in lockstep), with the same job ids (so a retry never queues a
job twice), and nothing is acknowledged; the broker stops sending once the MQTT 5 receive
window is full, which bounds the memory held (and the subscriber drops QoS 0 deliveries beyond
its inbox bounds). When Redis returns the ingestor carries on by itself.

``dead:ingest`` is capped in count and in bytes (:class:`IngestOptions` ``dead_max_count``,
``dead_max_bytes``): beyond either the oldest letters are evicted and counted, so a flood of
rejected payloads costs a bounded share of Redis.

Job ids: a message that carries its own timestamps gets an id derived from its topic and
bytes, so a copy redelivered after a crash is recognised and not queued twice while the first
is alive. Without timestamps, equal bytes may be two real readings, so the id is random.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from conveyor_ingestor.broker import Delivery, Subscriber
from conveyor_ingestor.errors import InvalidPayload
from conveyor_ingestor.metrics import IngestMetrics
from conveyor_ingestor.payloads import parse_job
from conveyor_ingestor.routing import Route, RoutingTable
from conveyor_ingestor.sparkplug.handling import SparkplugIngest
from reliable_queue import NewDeadLetter, NewJob, QueueClient, QueueUnavailable
from reliable_queue.backoff import Backoff
from reliable_queue.cancelling import cancel_and_wait
from reliable_queue.dead_letters import DeadLetterCap
from reliable_queue.job import new_job_id

log = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = "ingest"
DEAD_TOPIC_CHARS = 1024
"""How much of a rejected message's topic dead:ingest keeps (``topic_chars`` gives the length
of a longer one)."""
REJECTS_LOGGED_PER_INTERVAL = 20


@dataclass(frozen=True)
class IngestOptions:
    batch_size: int = 1000
    flush_interval: float = 0.005
    max_payload_bytes: int = 256 * 1024
    dead_payload_bytes: int = 4096
    """How much of a rejected payload dead:ingest keeps."""
    dead_max_count: int = 100_000
    """Most letters in dead:ingest; the oldest beyond are evicted (0: no cap)."""
    dead_max_bytes: int = 32 * 1024 * 1024
    """Most bytes of dead:ingest (see DeadLetterCap); the oldest beyond are evicted (0: none)."""
    unrouted_log_interval: float = 10.0
    retry_first_s: float = 0.05
    retry_cap_s: float = 5.0


@dataclass(slots=True)
class _Outcome:
    jobs: dict[str, list[NewJob]]
    dead: list[NewDeadLetter]


class Ingestor:
    def __init__(
        self,
        *,
        client: QueueClient,
        subscriber: Subscriber,
        routes: RoutingTable,
        options: IngestOptions | None = None,
        metrics: IngestMetrics | None = None,
        sparkplug: SparkplugIngest | None = None,
    ) -> None:
        """``sparkplug``: what handles the routes of kind ``sparkplug`` (needed if there are)."""
        if routes.sparkplug_filters and sparkplug is None:
            raise ValueError("routes of kind sparkplug need a SparkplugIngest")
        self.sparkplug = sparkplug
        self.client = client
        self.subscriber = subscriber
        self.routes = routes
        self.options = options or IngestOptions()
        self.metrics = metrics or IngestMetrics()
        self.redis_ok = False
        self._redis_checked = 0.0
        self._redis_checked_once = False
        self._stopping = False
        self._unrouted_logged = 0.0
        self._unrouted_since_log = 0
        self._evicted_logged = -float("inf")
        self._evicted_since_log = 0
        self._rejects_window = -float("inf")
        self._rejects_logged = self._rejects_unlogged = 0
        self._dead_cap = DeadLetterCap(
            max_count=self.options.dead_max_count, max_bytes=self.options.dead_max_bytes
        )
        self._backoff = Backoff(first=self.options.retry_first_s, cap=self.options.retry_cap_s)
        subscriber.on_drop = self.metrics.inbox_dropped.inc

    @property
    def ready(self) -> bool:
        return self.subscriber.subscribed and self.redis_ok

    async def run(self) -> None:
        """Ingest until :meth:`stop`; the caller starts and stops the subscriber.

        One batch is validated while the one before is in Redis's hands (not while Redis is
        away): batches still reach Redis, and are acknowledged, one after another in arrival
        order; once one is not stored (stopping during an outage), none after it is."""
        await self._check_redis()
        storing: asyncio.Task[bool] | None = None
        try:
            while not self._stopping:
                await self.subscriber.wait(0.5)
                handover = self.sparkplug is not None and self.sparkplug.due()
                if not self.subscriber.inbox and not handover:
                    # Idle: readiness still follows Redis (say, one that was not up yet when
                    # this pod started), checked every second while down, every 5 s while up;
                    # while a batch is being stored, that store says.
                    due = 5.0 if self.redis_ok else 1.0
                    idle = storing is None or storing.done()
                    if idle and time.monotonic() - self._redis_checked >= due:
                        await self._check_redis()
                    continue
                if storing is not None and not self.redis_ok:
                    # Redis is away: what arrives meanwhile stays in the inbox, within its bounds.
                    task, storing = storing, None
                    if not await task:
                        break
                if 0 < len(self.subscriber.inbox) < self.options.batch_size:
                    await asyncio.sleep(self.options.flush_interval)  # let the batch fill a little
                batch = self._take()
                if self.sparkplug is not None and (handover or self._sparkplug_deliveries(batch)):
                    # Sparkplug sessions change as a batch is sorted and are saved with it:
                    # one batch at a time, so that a save never carries the next one's changes
                    # (and edge nodes change hands between two batches, none in flight).
                    if storing is not None:
                        task, storing = storing, None
                        if not await task:
                            break
                    if not await self._prepare(batch):
                        break  # stopping while Redis is away: nothing of it is acknowledged
                outcome = self._sort(batch)
                if storing is not None:
                    task, storing = storing, None
                    if not await task:
                        break  # nothing after an unstored batch may be acknowledged
                storing = asyncio.create_task(self._store(batch, outcome))
                await asyncio.sleep(0)  # give it a turn to start sending before the next sort
        except BaseException:
            # Cancelled (or failed): end at once; what was not acknowledged is redelivered.
            self._stopping = True
            if storing is not None:
                await cancel_and_wait(storing)
            raise
        if storing is not None:
            await storing
        log.info("ingestor stopped")

    def stop(self) -> None:
        self._stopping = True

    def _take(self) -> list[Delivery]:
        return self.subscriber.take(self.options.batch_size)

    async def _store(self, batch: list[Delivery], outcome: _Outcome) -> bool:
        """Write a sorted batch to Redis (retrying while it is away), then acknowledge it;
        False if it was given up (stopping while Redis is away)."""
        started = time.perf_counter()
        while True:
            try:
                await self._write(outcome)
                self.redis_ok = True
                self._backoff.reset()
                break
            except QueueUnavailable as exc:
                self.redis_ok = False
                self.metrics.redis_errors.inc()
                if self._stopping:
                    log.warning(
                        "stopping with %d messages not enqueued; the broker keeps them", len(batch)
                    )
                    return False
                log.warning(
                    "%s; holding %d messages, retrying in %.2fs",
                    exc,
                    len(batch),
                    self._backoff.peek(),
                )
                await self._backoff.sleep()
        if batch:
            self.metrics.enqueue_seconds.observe(time.perf_counter() - started)
        self.subscriber.ack_all(batch)
        if self.sparkplug is not None:
            self.sparkplug.request_rebirths()
        return True

    def _sparkplug_deliveries(self, batch: list[Delivery]) -> list[Delivery]:
        found = []
        for d in batch:
            match = self.routes.match(d.topic)
            if match is not None and match.route.kind == "sparkplug":
                found.append(d)
        return found

    async def _prepare(self, batch: list[Delivery]) -> bool:
        """Load the Sparkplug sessions the batch needs (retrying while Redis is away); False if
        it was given up (stopping)."""
        assert self.sparkplug is not None
        sparkplug = self._sparkplug_deliveries(batch)
        while True:
            try:
                await self.sparkplug.prepare(sparkplug)
                break
            except QueueUnavailable as exc:
                self.redis_ok = False
                self.metrics.redis_errors.inc()
                if self._stopping:
                    return False
                log.warning("%s; retrying in %.2fs", exc, self._backoff.peek())
                await self._backoff.sleep()
        return True

    def _sort(self, batch: list[Delivery]) -> _Outcome:
        if batch:  # none: a cycle only to hand Sparkplug edge nodes over
            self.metrics.received.inc(len(batch))
            self.metrics.batch_size.observe(len(batch))
        jobs: dict[str, list[NewJob]] = defaultdict(list)
        dead: list[NewDeadLetter] = []
        for d in batch:
            match = self.routes.match(d.topic)
            if match is None:
                self._unrouted(d.topic)
                continue
            if len(d.payload) > self.options.max_payload_bytes:
                dead.append(
                    self._reject(
                        d,
                        "oversized",
                        (
                            f"payload of {len(d.payload):,} bytes is over the limit of "
                            f"{self.options.max_payload_bytes:,} (INGEST_MAX_PAYLOAD_BYTES)"
                        ),
                    )
                )
                continue
            if match.route.kind == "sparkplug":
                self._sparkplug(d, match.route, jobs, dead)
                continue
            try:
                data, own_identity = parse_job(
                    match.route.kind,
                    machine=match.machine,
                    topic=d.topic,
                    payload=d.payload,
                    received_at=int(d.received_at * 1000),
                )
            except InvalidPayload as exc:
                dead.append(
                    self._reject(
                        d,
                        exc.reason,
                        f"{exc.detail} (route {match.route.filter} "
                        f"expects a {match.route.kind} message)",
                    )
                )
                continue
            job_id = _stable_id(d.topic, d.payload) if own_identity else new_job_id()
            jobs[match.route.queue].append(
                NewJob(data, priority=match.route.priority, job_id=job_id)
            )
        if self.sparkplug is not None:
            # Kept messages of edge nodes just taken over, whose own were not in the batch.
            for d in self.sparkplug.take_replays():
                match = self.routes.match(d.topic)
                assert match is not None  # kept from this route
                self._sparkplug(d, match.route, jobs, dead)
        return _Outcome(dict(jobs), dead)

    def _sparkplug(
        self, d: Delivery, route: Route, jobs: dict[str, list[NewJob]], dead: list[NewDeadLetter]
    ) -> None:
        assert self.sparkplug is not None
        made = self.sparkplug.handle(d, queue=route.queue)
        for queue, data, job_id in made.jobs:
            priority = route.priority if queue == route.queue else None
            jobs[queue].append(NewJob(data, priority=priority, job_id=job_id))
        for parked, exc in made.dead:
            error = f"{exc.detail} (Sparkplug B route {route.filter})"
            dead.append(
                self._letter(parked.topic, parked.payload, parked.received_at, exc.reason, error)
            )

    async def _write(self, outcome: _Outcome) -> None:
        before = self.client.duplicates_skipped
        if len(outcome.jobs) == 1:  # the common case: sent without a task of its own
            [(queue, jobs)] = outcome.jobs.items()
            await self.client.enqueue_many(queue, jobs)
        else:
            await asyncio.gather(
                *(self.client.enqueue_many(q, jobs) for q, jobs in outcome.jobs.items())
            )
        for queue, jobs in outcome.jobs.items():
            self.metrics.enqueued.labels(queue).inc(len(jobs))
        self.metrics.duplicates.inc(self.client.duplicates_skipped - before)
        if self.sparkplug is not None:
            await self.sparkplug.save()  # the sessions, with the jobs they made
        if outcome.dead:
            done = await self.client.add_dead_letters(
                DEAD_LETTER_QUEUE, outcome.dead, cap=self._dead_cap
            )
            for letter in outcome.dead:
                self.metrics.rejected.labels(letter.reason).inc()
            if done.evicted:
                self.metrics.dead_evicted.inc(done.evicted)
                self._evicted(done.evicted)
            outcome.dead = []  # written: a retry of the jobs must not count them again

    def _reject(self, d: Delivery, reason: str, error: str) -> NewDeadLetter:
        return self._letter(d.topic, d.payload, int(d.received_at * 1000), reason, error)

    def _letter(
        self, full_topic: str, payload: bytes, received_at: int, reason: str, error: str
    ) -> NewDeadLetter:
        raw = payload[: self.options.dead_payload_bytes]
        try:
            shown: dict[str, object] = {"payload": raw.decode()}
        except UnicodeDecodeError:
            shown = {"payload_base64": base64.b64encode(raw).decode()}
        # A topic may be 64 KiB: keep enough of it to find the device, so that one letter is
        # always far smaller than the byte cap of dead:ingest.
        topic = full_topic[:DEAD_TOPIC_CHARS]
        data = {
            "topic": topic,
            **({"topic_chars": len(full_topic)} if len(topic) < len(full_topic) else {}),
            **shown,
            "payload_bytes": len(payload),
            "truncated": len(payload) > len(raw),
            "received_at": received_at,
        }
        self._log_rejected(full_topic, reason, error)
        job_id = _stable_id(full_topic, payload)
        return NewDeadLetter(data=data, reason=reason, error=error, job_id=job_id)

    def _log_rejected(self, topic: str, reason: str, error: str) -> None:
        # A flood of bad input must not become a flood of log lines: the first few of each
        # interval are logged, the rest counted (every one is in dead:ingest and the metric).
        now = time.monotonic()
        if now - self._rejects_window >= self.options.unrouted_log_interval:
            if self._rejects_unlogged:
                log.warning(
                    "%d more message(s) rejected in the last %.0fs without a line each: "
                    "see `conveyor dlq list ingest`",
                    self._rejects_unlogged,
                    now - self._rejects_window,
                )
            self._rejects_window = now
            self._rejects_logged = self._rejects_unlogged = 0
        if self._rejects_logged < REJECTS_LOGGED_PER_INTERVAL:
            self._rejects_logged += 1
            log.warning("rejected a message on %r: %s", topic, error, extra={"reason": reason})
        else:
            self._rejects_unlogged += 1

    def _evicted(self, n: int) -> None:
        now = time.monotonic()
        self._evicted_since_log += n
        if now - self._evicted_logged >= self.options.unrouted_log_interval:
            log.warning(
                "dead:ingest is full (INGEST_DEAD_MAX_COUNT=%d, INGEST_DEAD_MAX_BYTES=%d): "
                "evicted the %d oldest letter(s) to keep the newest; find the device sending "
                "bad payloads with `conveyor dlq list ingest`",
                self.options.dead_max_count,
                self.options.dead_max_bytes,
                self._evicted_since_log,
            )
            self._evicted_logged = now
            self._evicted_since_log = 0

    def _unrouted(self, topic: str) -> None:
        self.metrics.unrouted.inc()
        self._unrouted_since_log += 1
        now = time.monotonic()
        if now - self._unrouted_logged >= self.options.unrouted_log_interval:
            log.warning(
                "%d message(s) matched no route (last on %r); they are acknowledged and dropped: "
                "add a route if they matter",
                self._unrouted_since_log,
                topic,
            )
            self._unrouted_logged = now
            self._unrouted_since_log = 0

    async def _check_redis(self) -> None:
        self._redis_checked = time.monotonic()
        try:
            await self.client.ping()
        except QueueUnavailable as exc:
            if self.redis_ok or not self._redis_checked_once:
                log.warning("%s; not ready, checking again every second", exc)
            self.redis_ok = False
        else:
            if not self.redis_ok and self._redis_checked_once:
                log.info("Redis answers again; ready")
            self.redis_ok = True
        self._redis_checked_once = True


def _stable_id(topic: str, payload: bytes) -> str:
    return "m" + hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
