"""Sparkplug B in the ingestor: a route of kind ``sparkplug`` hands its messages here.

For each batch the ingestor (1) has the sessions of the batch's edge nodes loaded
(:meth:`SparkplugIngest.prepare`), (2) turns each message into jobs - realtime messages into the
route's queue, ``node_offline`` alerts into ``alerts_queue`` - or dead letters
(:meth:`~SparkplugIngest.handle`), (3) saves what changed in the sessions with the batch's jobs
(:meth:`~SparkplugIngest.save`), before it acknowledges the batch to the broker, and then (4)
asks edge nodes for the rebirths the batch needs (:meth:`~SparkplugIngest.request_rebirths`).

One edge node's messages must be handled in order, by one replica. Every replica subscribes to
every Sparkplug message (no shared subscription) and handles the edge nodes it holds
(:mod:`~conveyor_ingestor.sparkplug.owners`: the live replicas agree on who should, and the
store records who does); the other nodes' messages it keeps a while
(:mod:`~conveyor_ingestor.sparkplug.standby`). When the replicas change, each takes, between
two batches, the nodes that are now its own: from a holder that is gone or stopped (it lets go
of its nodes) at once, from a live one once it has received itself the last message that one
handled. It loads their sessions and handles first what it kept of them after that message;
the previous holder's writes are refused from then on, and it forgets the node. The price is
that every replica receives every Sparkplug message.
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
from conveyor_ingestor.sparkplug.owners import Membership
from conveyor_ingestor.sparkplug.sessions import Parked, SessionOptions, Sessions, unexpected
from conveyor_ingestor.sparkplug.standby import Standby
from conveyor_ingestor.sparkplug.store import Refused, SessionStore, Taken
from conveyor_ingestor.sparkplug.topics import Topic, parse_topic
from reliable_queue import QueueUnavailable

log = logging.getLogger(__name__)

REBIRTH_METRIC = "Node Control/Rebirth"


@dataclass(frozen=True, slots=True)
class SparkplugOptions:
    alerts_queue: str = "alerts"
    """Where ``node_offline`` alerts go."""
    standby_window_s: float = 30.0
    """How long the messages of nodes other replicas handle are kept (three times as long as a
    replica that stops announcing itself is still taken for alive)."""
    standby_max_bytes: int = 64 * 1024 * 1024
    """Most payload bytes kept of them, over all nodes."""
    sessions: SessionOptions = field(default_factory=SessionOptions)


@dataclass(slots=True)
class Made:
    """What one delivery made: jobs (queue, data, job id) and dead letters (the message, why)."""

    jobs: list[tuple[str, Message, str]] = field(default_factory=list)
    dead: list[tuple[Parked, InvalidPayload]] = field(default_factory=list)


def rebirth_request() -> bytes:
    """NCMD payload asking an edge node to publish its births again (Sparkplug 3.0, 6.4.14)."""
    rebirth = OutMetric(BOOLEAN, True, name=REBIRTH_METRIC)
    return encode_payload([rebirth], timestamp=int(time.time() * 1000))


class SparkplugIngest:
    def __init__(
        self,
        store: SessionStore,
        *,
        owners: Membership,
        options: SparkplugOptions | None = None,
        publish: Callable[[str, bytes], None],
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.options = options or SparkplugOptions()
        self.store = store
        self.owners = owners
        self.sessions = Sessions(self.options.sessions)
        self.standby = Standby(
            window_s=self.options.standby_window_s, max_bytes=self.options.standby_max_bytes
        )
        self.held: set[str] = set()
        """The edge nodes this replica handles."""
        self.metrics = metrics or IngestMetrics()
        self.metrics.sparkplug_edge_nodes.set_function(lambda: len(self.held))
        self._publish = publish
        self._rebirths: dict[str, Topic] = {}
        self._replays: dict[str, list[Delivery]] = {}
        """Kept messages of nodes just taken, to handle before their next."""
        self._handled_through: dict[str, str] = {}
        """Nodes just taken whose previous holder's last message is in the batch: up to it,
        their messages are skipped."""
        self._batch: dict[str, list[Delivery]] = {}
        """The messages handled since the last save, per node."""
        self._view_stale = False
        self._checked: set[str] = set()
        """Other replicas' nodes this one looked for itself among their holders."""
        self._last: dict[str, str] = {}
        """Digest of the last message handled per node, not saved yet."""
        self._view = 0
        self._retry_at: float | None = None
        """When to ask again for the nodes kept here that are this replica's (None: no need)."""
        self._dropped = 0
        self._error_logged = -float("inf")

    @property
    def replica(self) -> str:
        return self.owners.replica

    def due(self) -> bool:
        """Whether to take nodes without waiting for their next message: the replicas
        changed, or a node kept here is this replica's and its holder had not handed it over
        when last asked."""
        if self.owners.view != self._view:
            return True
        return self._retry_at is not None and time.monotonic() >= self._retry_at

    async def prepare(self, batch: list[Delivery]) -> None:
        """Before a batch of messages on ``sparkplug`` routes: take the nodes that are this
        replica's (loading their sessions); raises QueueUnavailable while Redis is away."""
        if not self.owners.fresh or self._view_stale:
            # Not announced lately (or just starting): Redis may be away, and the view of the
            # replicas stale. Nothing of the batch is acknowledged until it is current.
            await self.owners.announce()
            self._view_stale = False
        now = time.monotonic()
        self.standby.expire(now)
        if self.standby.dropped > self._dropped:
            self.metrics.sparkplug.labels("standby_dropped").inc(
                self.standby.dropped - self._dropped
            )
            self._dropped = self.standby.dropped
        if self.owners.view != self._view:
            self._view = self.owners.view
            self._retry_at = now  # the nodes kept here that are now this replica's
        wanted: dict[str, list[Delivery]] = {}
        unknown: dict[str, None] = {}
        for d in batch:
            try:
                topic = parse_topic(d.topic)
            except InvalidPayload:
                continue  # handle() says why
            if topic is None or topic.node_key in self.sessions:
                continue
            node = topic.node_key
            if self.owners.mine(node) or node in self.held:  # held: its session was trimmed
                wanted.setdefault(node, []).append(d)
            elif node not in self._checked:
                unknown[node] = None
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            for node in self.standby.nodes():
                if self.owners.mine(node):
                    wanted.setdefault(node, [])
        if unknown:
            # Others' nodes, first seen since this replica started: does it hold one still
            # (it died and came back before another took the node)? Then it handles the node
            # until the replica it belongs to takes it over.
            own = await self.store.take(unknown, replica=self.replica, live=(), own=True)
            if len(self._checked) > 100_000:
                self._checked.clear()
            self._checked.update(unknown)
            for node, got in own.items():
                if isinstance(got, Taken):
                    self.sessions.put(got.session)
                    self.held.add(node)
                    if replay := _after(self.standby.take(node), got.last):
                        self._replays[node] = replay
        if not wanted:
            return
        # Until announcing for a TTL, a holder missing from the view may only be slow to
        # announce itself again (after a Redis outage): taken from only as from a live one.
        live = self.owners.members if self.owners.settled else ("*",)
        taken = await self.store.take(wanted, replica=self.replica, live=live)
        # Held by a live replica (that has not seen the change yet, or hands the node over):
        # taken once this one has the last message the holder handled, kept or in this batch,
        # so that it misses none after it.
        expected = {
            node: got.last
            for node, got in taken.items()
            if isinstance(got, Refused)
            and got.last is not None
            and _has(self.standby.peek(node) + wanted[node], got.last)
        }
        if expected:
            taken.update(
                await self.store.take(expected, replica=self.replica, live=live, expected=expected)
            )
        took = replayed = 0
        for node, got in taken.items():
            if isinstance(got, Refused):  # asked again with its next message, or in a while
                if self._retry_at is None:
                    self._retry_at = now + self.owners.heartbeat_s
                if node in self.held:
                    log.info("Sparkplug edge node %s is handled by %s now", node, got.holder)
                    self._forget(node)
                continue
            self.sessions.put(got.session)
            if node in self.held:
                continue  # its session was only out of memory
            self.held.add(node)
            took += 1
            kept = self.standby.take(node)
            if got.last is not None and not _has(kept, got.last) and _has(wanted[node], got.last):
                self._handled_through[node] = got.last  # in this batch: what precedes it is done
                continue
            replay = _after(kept, got.last)
            if got.last is not None and len(replay) == len(kept) and kept:
                # The holder's last message is not among those kept: it was ahead of this
                # replica (some will be handled twice), or behind by more than they reach.
                log.warning(
                    "took Sparkplug edge node %s without the last message its holder handled "
                    "among the %d kept: handling them all",
                    node,
                    len(kept),
                )
                self.metrics.sparkplug.labels("taken_without_last").inc()
            if replay:
                self._replays[node] = replay
                replayed += len(replay)
        if took:
            log.info(
                "took %d Sparkplug edge nodes (%d messages kept of them handled first)",
                took,
                replayed,
            )
            self.metrics.sparkplug.labels("taken").inc(took)
            self.metrics.sparkplug.labels("replayed").inc(replayed)

    def handle(self, d: Delivery, *, queue: str) -> Made:
        """The jobs and dead letters of one delivery on a ``sparkplug`` route into ``queue``:
        none if another replica handles its node (it is kept a while)."""
        made = Made()
        try:
            topic = parse_topic(d.topic)
        except InvalidPayload as exc:
            if self.owners.mine(d.topic):  # one replica says so, not each
                made.dead.append((self._parked(d, exc.reason), exc))
            return made
        if topic is None:
            return made  # a host application's STATE: nothing to ingest
        node = topic.node_key
        if node not in self.held:
            self.standby.add(node, d, time.monotonic())
            self.metrics.sparkplug.labels("kept_for_other_replica").inc()
            return made
        handled_through = self._handled_through.get(node)
        if handled_through is not None:  # the previous holder handled it
            if digest(d) == handled_through:
                del self._handled_through[node]
            return made
        for kept in self._replays.pop(node, ()):
            self._handle(kept, topic_of(kept), queue, made)
        self._handle(d, topic, queue, made)
        return made

    def take_replays(self) -> list[Delivery]:
        """The kept messages of nodes taken whose own were not in the batch (they are handled
        with it)."""
        replays = [d for kept in self._replays.values() for d in kept]
        self._replays.clear()
        return replays

    def _handle(self, d: Delivery, topic: Topic, queue: str, made: Made) -> None:
        self._last[topic.node_key] = digest(d)
        self._batch.setdefault(topic.node_key, []).append(d)
        received_at = int(d.received_at * 1000)
        try:
            payload = decode(d.payload)
            handled = self.sessions.handle(
                topic, payload, raw=d.payload, received_at=received_at, now=time.monotonic()
            )
        except InvalidPayload as exc:
            made.dead.append((self._parked(d, exc.reason), exc))
            return
        except Exception as exc:
            if time.monotonic() - self._error_logged >= 60:
                self._error_logged = time.monotonic()
                log.exception("a Sparkplug B message on %r could not be handled", d.topic)
            error = unexpected(exc)
            made.dead.append((self._parked(d, error.reason), error))
            return
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

    @staticmethod
    def _parked(d: Delivery, reason: str) -> Parked:
        return Parked(d.topic, d.payload, int(d.received_at * 1000), reason, None)

    async def save(self) -> None:
        """Store what the handled messages changed (before their batch is acknowledged)."""
        todo = {s.node_key: s for s in self.sessions.changed()}
        for node in self._last:
            session = self.sessions.get(node)
            if session is not None:
                todo.setdefault(node, session)
        lost = await self.store.save(todo.values(), replica=self.replica, last=self._last)
        self._last.clear()
        batch, self._batch = self._batch, {}
        now = time.monotonic()
        for node in lost:
            # Taken by the replica it belongs to now (or this one was taken for gone): what
            # this one made of the node's last messages, the new holder makes again; kept
            # here as not handled, should the node come back to this replica.
            log.info("Sparkplug edge node %s is handled by another replica now", node)
            self.metrics.sparkplug.labels("taken_away").inc()
            self._forget(node)
            for d in batch.get(node, ()):
                self.standby.add(node, d, now)
            self._view_stale = True
        # Nodes whose sessions memory no longer holds (the least recently heard of): let go,
        # so that this replica holds no more nodes than sessions.
        idle = [node for node in self.sessions.trim() if node in self.held]
        if idle:
            await self.store.let_go(idle, replica=self.replica)
            self.held.difference_update(idle)

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

    async def leave(self) -> None:
        """A clean stop, after the last batch was stored: let go of every node and withdraw,
        so that the other replicas take them at once."""
        try:
            await self.store.let_go(self.held, replica=self.replica)
        except QueueUnavailable as exc:
            log.warning("%s; the other replicas take them once this one is gone", exc)
        self.metrics.sparkplug.labels("let_go").inc(len(self.held))
        await self.owners.leave()
        for node in list(self.held):
            self._forget(node)

    def _forget(self, node: str) -> None:
        self.held.discard(node)
        self.sessions.drop(node)
        self._replays.pop(node, None)
        self._handled_through.pop(node, None)
        self._batch.pop(node, None)
        self._rebirths.pop(node, None)
        self._last.pop(node, None)


def topic_of(d: Delivery) -> Topic:
    topic = parse_topic(d.topic)
    assert topic is not None  # kept because its topic named a node
    return topic


def digest(d: Delivery) -> str:
    """Names one message: the store keeps the last handled, to find where a taker resumes."""
    return hashlib.blake2b(d.topic.encode() + b"\0" + d.payload, digest_size=12).hexdigest()


def _has(messages: list[Delivery], last: str) -> bool:
    return any(digest(d) == last for d in reversed(messages))


def _after(kept: list[Delivery], last: str | None) -> list[Delivery]:
    """What of ``kept`` comes after the message ``last`` (all of it if it is not there). The
    same bytes twice: after the first, handling some twice rather than missing any."""
    if last is not None:
        for i, d in enumerate(kept):
            if digest(d) == last:
                return kept[i + 1 :]
    return kept


def _job_id(topic: str, payload: bytes, what: str) -> str:
    """Stable for the same message (a redelivery, a parked message taken again): queued once."""
    h = hashlib.blake2b(topic.encode() + b"\0" + what.encode() + b"\0" + payload, digest_size=12)
    return "s" + h.hexdigest()
