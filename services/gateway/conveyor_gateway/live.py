"""The live stream: one Redis pub/sub subscription fanned out to every WebSocket client.

The workers publish the realtime values of each batch (one event per machine, the newest value
of each signal), each tech change and alert on ``conveyor:live:<machine>``. The hub reads them
once and hands each message, encoded once, to every client whose subscription matches. Each
client has a buffer bounded both in messages and in bytes (a few large messages weigh as much as
many small ones); a client that goes past either bound is marked as lagging and dropped by its
connection, so one slow screen never slows the hub or the others, nor holds more than its share
of the gateway's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor_plant.keys import LIVE_CHANNEL_PATTERN
from redis.exceptions import RedisError

from conveyor_gateway.metrics import GatewayMetrics
from reliable_queue.backoff import Backoff

log = logging.getLogger(__name__)

KINDS = frozenset({"realtime", "tech", "alert"})
CHANNEL_PREFIX = LIVE_CHANNEL_PATTERN.removesuffix("*")


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which messages a client wants: machines (None: all) and kinds (None: all)."""

    machines: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    @classmethod
    def parse(cls, machines: Iterable[str] | None, kinds: Iterable[str] | None) -> Subscription:
        """From lists as clients send them; ``*`` or nothing means all. Raises ValueError."""
        m = _names(machines)
        k = _names(kinds)
        if k is not None and not k <= KINDS:
            unknown = ", ".join(sorted(k - KINDS))
            raise ValueError(f"unknown kind(s) {unknown}: use realtime, tech or alert")
        return cls(machines=m, kinds=k)

    def wants(self, machine: str, kind: str) -> bool:
        return (self.machines is None or machine in self.machines) and (
            self.kinds is None or kind in self.kinds
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "machines": sorted(self.machines) if self.machines is not None else ["*"],
            "kinds": sorted(self.kinds) if self.kinds is not None else ["*"],
        }


def _names(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    names = frozenset(v.strip() for v in values if v.strip())
    return None if not names or "*" in names else names


@dataclass(eq=False, slots=True)
class LiveClient:
    """One WebSocket client's buffer: at most ``buffer.maxsize`` messages and ``max_bytes``
    bytes. ``lagging`` is set when a message would go past either bound (and is not kept)."""

    subscription: Subscription
    buffer: asyncio.Queue[tuple[str, int]]
    max_bytes: int
    queued_bytes: int = 0
    lagging: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0

    def offer(self, text: str, size: int) -> None:
        """Queue ``text`` (``size`` bytes encoded) unless the client is past a bound."""
        if self.queued_bytes + size > self.max_bytes:
            self.dropped += 1
            self.lagging.set()
            return
        try:
            self.buffer.put_nowait((text, size))
        except asyncio.QueueFull:
            self.dropped += 1
            self.lagging.set()
            return
        self.queued_bytes += size

    async def take(self) -> str:
        """The next message to send, waiting for one."""
        text, size = await self.buffer.get()
        self.queued_bytes -= size
        return text


class PubSubClient(Protocol):
    """What the hub subscribes through: any redis client (the gateway passes the plant state's
    own connection, ``PlantState.redis``; a test, one of its own). A fresh ``pubsub()`` per
    subscription, so that a lost connection is replaced, not reused."""

    def pubsub(self, *, ignore_subscribe_messages: bool) -> Any: ...


class LiveHub:
    """Reads ``conveyor:live:*`` and fans out; reconnects with backoff when Redis goes away
    (jittered, so that the gateway replicas do not all resubscribe at the same moments)."""

    def __init__(
        self, redis: PubSubClient, *, buffer: int, buffer_bytes: int, metrics: GatewayMetrics
    ) -> None:
        self._redis = redis
        self._buffer = buffer
        self._buffer_bytes = buffer_bytes
        self._metrics = metrics
        self._clients: set[LiveClient] = set()
        self._backoff = Backoff(first=0.5, cap=10.0)
        self.subscribed = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    def connect(self, subscription: Subscription) -> LiveClient:
        client = LiveClient(
            subscription, asyncio.Queue(maxsize=self._buffer), max_bytes=self._buffer_bytes
        )
        self._clients.add(client)
        self._metrics.ws_clients.set(len(self._clients))
        return client

    def disconnect(self, client: LiveClient) -> None:
        self._clients.discard(client)
        self._metrics.ws_clients.set(len(self._clients))

    def dispatch(self, channel: str, data: bytes | str) -> int:
        """Hand one published message to every matching client; returns how many got it."""
        if isinstance(data, bytes):
            text, size = data.decode(), len(data)
        else:
            text, size = data, len(data.encode())
        machine = channel.removeprefix(CHANNEL_PREFIX)
        try:
            event = json.loads(text)
            kind = str(event.get("kind", "alert")) if isinstance(event, dict) else ""
        except ValueError:
            log.warning("ignoring a live message on %s that is not JSON", channel)
            return 0
        delivered = 0
        for client in self._clients:
            if client.subscription.wants(machine, kind):
                client.offer(text, size)
                delivered += 1
        self._metrics.live_messages.inc()
        self._metrics.fanned_out.inc(delivered)
        return delivered

    async def run(self) -> None:
        """Until cancelled: subscribe, dispatch, and on a Redis error wait and resubscribe."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(LIVE_CHANNEL_PATTERN)
                self.subscribed = True
                self._backoff.reset()
                log.info("live stream subscribed to %s", LIVE_CHANNEL_PATTERN)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        channel = message["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        self.dispatch(channel, message["data"])
                        # Messages already buffered are parsed without yielding; let the
                        # clients' senders drain between two, so a burst is not an overflow.
                        await asyncio.sleep(0)
            except (RedisError, OSError) as exc:
                self.subscribed = False
                self._metrics.redis_errors.inc()
                log.warning(
                    "live stream lost Redis (%s); resubscribing in %.1fs",
                    exc,
                    self._backoff.peek(),
                )
                await self._backoff.sleep()
            finally:
                self.subscribed = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
