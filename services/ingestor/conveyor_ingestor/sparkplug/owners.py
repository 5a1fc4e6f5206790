"""Which ingestor replica handles which Sparkplug edge node.

One edge node's messages must be handled in order, by one replica, and every replica receives
every Sparkplug message (the routes are not shared through ``$share``). The replicas announce
themselves in Redis: a sorted set of replica ids (their MQTT client ids), each scored by when
its announcement lapses, renewed every ``heartbeat_s``; a replica not heard of for ``ttl_s``
is gone. An edge node belongs to the live replica that ranks highest for it (rendezvous
hashing): replicas that see the same members agree on every node's owner without talking,
and a replica joining or leaving moves only the nodes it takes or had.

Which replica *holds* a node is recorded with the node's session
(:mod:`conveyor_ingestor.sparkplug.store`), and changes hands as
:mod:`conveyor_ingestor.sparkplug.handling` says.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time

from redis.exceptions import RedisClusterException, RedisError

from reliable_queue import QueueUnavailable
from reliable_queue.connection import RedisClient
from reliable_queue.keys import PREFIX

log = logging.getLogger(__name__)

MEMBERS_KEY = f"{PREFIX}:sparkplug:replicas"
# KEYS[1]: the members. ARGV[1]: this replica; ARGV[2]: its TTL in ms. Scored by the server's
# clock, so that replicas' clocks need not agree. Returns the live members.
ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 3)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def rank(replica: str, node_key: str) -> bytes:
    return hashlib.blake2b(f"{replica}\0{node_key}".encode(), digest_size=8).digest()


def owner_of(node_key: str, replicas: tuple[str, ...]) -> str | None:
    """The replica that handles ``node_key`` among ``replicas`` (None: there are none)."""
    return max(replicas, key=lambda r: rank(r, node_key), default=None)


class Membership:
    """This replica's announcement, and the live replicas it last saw."""

    def __init__(
        self, redis: RedisClient, replica: str, *, ttl_s: float = 10.0, heartbeat_s: float = 2.0
    ) -> None:
        if not heartbeat_s * 2 < ttl_s:
            raise ValueError(f"heartbeat {heartbeat_s}s must be under half the TTL {ttl_s}s")
        self.redis = redis
        self.replica = replica
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.members: tuple[str, ...] = ()
        """The live replicas, as last seen (empty before the first announcement)."""
        self.view = 0
        """Counts the changes of :attr:`members`."""
        self._owners: dict[str, str | None] = {}
        self._announced_at = -math.inf
        self._back_since = math.inf
        """Since when announcements succeed without a break (monotonic seconds)."""

    def owner(self, node_key: str) -> str | None:
        owner = self._owners.get(node_key, "")
        if owner == "":
            if len(self._owners) >= 100_000:
                self._owners.clear()
            owner = self._owners[node_key] = owner_of(node_key, self.members)
        return owner

    def mine(self, node_key: str) -> bool:
        return self.owner(node_key) == self.replica

    @property
    def fresh(self) -> bool:
        """Announced lately: its view of the replicas is current, and the others count it in.
        (While it is not, Redis is away: nothing may be acknowledged.)"""
        return time.monotonic() - self._announced_at < self.ttl_s / 2

    @property
    def settled(self) -> bool:
        """Announcing for a full TTL without a break: replicas that were away as long as it
        was (a Redis outage) have had the time to announce themselves again, so one missing
        from its view is gone."""
        return time.monotonic() - self._back_since >= self.ttl_s

    async def announce(self) -> None:
        """Renew this replica's announcement and read the live replicas (raises
        QueueUnavailable while Redis is away)."""
        try:
            found = await self.redis.eval(
                ANNOUNCE, 1, MEMBERS_KEY, self.replica, int(self.ttl_s * 1000)
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            self._back_since = math.inf
            raise QueueUnavailable(f"cannot announce this ingestor replica: {exc}") from exc
        now = time.monotonic()
        if self._back_since == math.inf or now - self._announced_at >= self.ttl_s:
            self._back_since = now  # the first, or the first after a failure or a break
        self._announced_at = now
        members = tuple(sorted(m.decode() if isinstance(m, bytes) else m for m in found))
        if members != self.members:
            log.info("Sparkplug replicas: %s", ", ".join(members))
            self.members = members
            self._owners.clear()
            self.view += 1

    async def run(self) -> None:
        """Announce every ``heartbeat_s`` until cancelled; Redis away: warned, retried."""
        while True:
            try:
                await self.announce()
            except QueueUnavailable as exc:
                log.warning("%s; retrying in %.1fs", exc, self.heartbeat_s)
            await asyncio.sleep(self.heartbeat_s)

    async def leave(self) -> None:
        """Withdraw the announcement (a clean stop): the others take its nodes at once."""
        try:
            await self.redis.zrem(MEMBERS_KEY, self.replica)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("cannot withdraw this replica (the others wait %ss): %s", self.ttl_s, exc)
