"""Sparkplug B in the ingestor: a route of kind ``sparkplug`` hands its messages here.

For each batch the ingestor (1) has the sessions of the batch's edge nodes loaded
(:meth:`SparkplugIngest.prepare`), (2) turns each message into jobs - realtime messages into the
route's queue, ``node_offline`` alerts into ``alerts_queue`` - or dead letters
(:meth:`~SparkplugIngest.handle`), (3) saves what changed in the sessions with the batch's jobs
(:meth:`~SparkplugIngest.save`), before it acknowledges the batch to the broker, and then (4)
asks edge nodes for the rebirths the batch needs (:meth:`~SparkplugIngest.request_rebirths`).

One edge node's messages must be handled in order, by one ingestor. With several replicas,
each subscribes to every Sparkplug message without a shared subscription and handles the edge
nodes whose stable hash falls in its partition (``partitions``, ``partition``: the StatefulSet's
replicas and this pod's ordinal); the others' messages it acknowledges and leaves to them. The
price is that every replica receives every Sparkplug message.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor_messages.contract import Message

from conveyor_ingestor.broker import Delivery
from conveyor_ingestor.errors import InvalidPayload
from conveyor_ingestor.metrics import IngestMetrics
from conveyor_ingestor.sparkplug.decoding import BOOLEAN, decode
from conveyor_ingestor.sparkplug.encoding import OutMetric, encode_payload
from conveyor_ingestor.sparkplug.sessions import Parked, SessionOptions, Sessions, unexpected
from conveyor_ingestor.sparkplug.store import SessionStore
from conveyor_ingestor.sparkplug.topics import Topic, parse_topic

log = logging.getLogger(__name__)

REBIRTH_METRIC = "Node Control/Rebirth"


@dataclass(frozen=True, slots=True)
class SparkplugOptions:
    alerts_queue: str = "alerts"
    """Where ``node_offline`` alerts go."""
    partitions: int = 1
    partition: int = 0
    sessions: SessionOptions = field(default_factory=SessionOptions)


@dataclass(slots=True)
class Made:
    """What one delivery made: jobs (queue, data, job id) and dead letters (the message, why)."""

    jobs: list[tuple[str, Message, str]] = field(default_factory=list)
    dead: list[tuple[Parked, InvalidPayload]] = field(default_factory=list)


def partition_of(node_key: str, partitions: int) -> int:
    """The partition of an edge node: the same on every replica and every restart."""
    digest = hashlib.blake2b(node_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def rebirth_request() -> bytes:
    """NCMD payload asking an edge node to publish its births again (Sparkplug 3.0, 6.4.14)."""
    rebirth = OutMetric(BOOLEAN, True, name=REBIRTH_METRIC)
    return encode_payload([rebirth], timestamp=int(time.time() * 1000))


class SparkplugIngest:
    def __init__(
        self,
        store: SessionStore,
        *,
        options: SparkplugOptions | None = None,
        publish: Callable[[str, bytes], None],
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.options = options or SparkplugOptions()
        if not 0 <= self.options.partition < self.options.partitions:
            raise ValueError(
                f"partition {self.options.partition} is not one of 0..{self.options.partitions - 1}"
            )
        self.store = store
        self.sessions = Sessions(self.options.sessions)
        self.metrics = metrics or IngestMetrics()
        self._publish = publish
        self._rebirths: dict[str, Topic] = {}
        self._error_logged = -float("inf")

    def mine(self, topic: Topic) -> bool:
        if self.options.partitions == 1:
            return True
        return partition_of(topic.node_key, self.options.partitions) == self.options.partition

    async def prepare(self, topics: list[str]) -> None:
        """Load the sessions of the edge nodes of ``topics`` not yet in memory (raises
        QueueUnavailable while Redis is away)."""
        missing: dict[str, None] = {}
        for text in topics:
            try:
                topic = parse_topic(text)
            except InvalidPayload:
                continue  # handle() says why
            if topic is not None and topic.node_key not in self.sessions and self.mine(topic):
                missing[topic.node_key] = None
        for session in await self.store.load(missing):
            self.sessions.put(session)

    def handle(self, d: Delivery, *, queue: str) -> Made:
        """The jobs and dead letters of one delivery on a ``sparkplug`` route into ``queue``."""
        made = Made()
        received_at = int(d.received_at * 1000)
        try:
            topic = parse_topic(d.topic)
            if topic is None:
                return made  # a host application's STATE: nothing to ingest
            if not self.mine(topic):
                self.metrics.sparkplug.labels("other_partition").inc()
                return made
            payload = decode(d.payload)
            handled = self.sessions.handle(
                topic, payload, raw=d.payload, received_at=received_at, now=time.monotonic()
            )
        except InvalidPayload as exc:
            made.dead.append((Parked(d.topic, d.payload, received_at, exc.reason, None), exc))
            return made
        except Exception as exc:
            if time.monotonic() - self._error_logged >= 60:
                self._error_logged = time.monotonic()
                log.exception("a Sparkplug B message on %r could not be handled", d.topic)
            error = unexpected(exc)
            made.dead.append((Parked(d.topic, d.payload, received_at, error.reason, None), error))
            return made
        for data, raw in handled.realtime:
            made.jobs.append((queue, data, _job_id(data["topic"], raw, data["machine"])))
        for alert in handled.alerts:
            made.jobs.append(
                (
                    self.options.alerts_queue,
                    alert,
                    _job_id(alert["topic"], d.payload, f"{alert['machine']}:alert"),
                )
            )
        made.dead.extend(handled.rejected)
        if handled.parked:
            self.metrics.sparkplug.labels("parked").inc()
        if handled.resumed:
            self.metrics.sparkplug.labels("resolved_after_rebirth").inc(handled.resumed)
        if handled.stale_death:
            self.metrics.sparkplug.labels("stale_death").inc()
        if handled.rebirth:
            self._rebirths[topic.node_key] = topic
        return made

    async def save(self) -> None:
        """Store what the handled messages changed (before their batch is acknowledged)."""
        await self.store.save(self.sessions.changed())
        self.sessions.trim()

    def request_rebirths(self) -> None:
        """Publish the Rebirth requests of the batch just stored."""
        for node_key, topic in self._rebirths.items():
            session = self.sessions.get(node_key)
            log.warning(
                "asking Sparkplug edge node %s for a rebirth: %s",
                node_key,
                session.awaiting_rebirth if session is not None else "its session is not known",
            )
            self._publish(topic.command(), rebirth_request())
            self.metrics.sparkplug.labels("rebirth_requested").inc()
        self._rebirths.clear()


def _job_id(topic: str, payload: bytes, what: str) -> str:
    """Stable for the same message (a redelivery, a parked message taken again): queued once."""
    digest = hashlib.blake2b(
        topic.encode() + b"\0" + what.encode() + b"\0" + payload, digest_size=12
    )
    return "s" + digest.hexdigest()
