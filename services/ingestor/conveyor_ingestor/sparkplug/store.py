"""Where the Sparkplug sessions live in Redis, so that every ingestor replica, and this one after
a restart, knows each edge node's births, aliases, ``seq`` and waiting messages.

Per edge node, hash-tagged by it (one Cluster slot):

- ``conveyor:sparkplug:{<group>/<node>}``: HASH with ``session`` (JSON: bdSeq, online, the
  node's and devices' births, open alerts, why it waits for a rebirth) and ``seq``;
- ``conveyor:sparkplug:{<group>/<node>}:parked``: LIST of the messages that wait for its
  rebirth (JSON with the payload in base64 and the reason), oldest first.

Both expire ``ttl_s`` after the node's last message (7 days by default; a day for a node that
has not been born), so that edge nodes that are gone, or node ids a misbehaving client made up,
do not stay forever; a node back after that is asked for a rebirth like a new one. (What waits
for a node that is not born within a day expires with it: it could not have been named.)
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.exceptions import RedisClusterException, RedisError

from conveyor_ingestor.sparkplug.sessions import Session
from reliable_queue import QueueUnavailable
from reliable_queue.connection import RedisClient, connect
from reliable_queue.keys import PREFIX

DEFAULT_TTL_S = 7 * 24 * 3600
# KEYS[1]: a parked list. ARGV[1]: its TTL; ARGV[2..]: its entries, oldest first (none: gone).
REWRITE = """
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return #ARGV - 1
"""
UNBORN_TTL_S = 24 * 3600
"""TTL of an edge node never born (or whose birth was refused), and what it has waiting."""


def session_key(node_key: str) -> str:
    return f"{PREFIX}:sparkplug:{{{node_key}}}"


def parked_key(node_key: str) -> str:
    return f"{session_key(node_key)}:parked"


class SessionStore:
    """Loads and saves :class:`~conveyor_ingestor.sparkplug.sessions.Session` s."""

    def __init__(self, redis: RedisClient, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False) -> SessionStore:
        return cls(connect(url, cluster=cluster))

    async def close(self) -> None:
        await self.redis.aclose()

    async def load(self, node_keys: Iterable[str]) -> list[Session]:
        keys = list(node_keys)
        if not keys:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(session_key(key), ["session", "seq"])
                pipe.lrange(parked_key(key), 0, -1)
            found = await pipe.execute()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise QueueUnavailable(f"cannot load Sparkplug sessions from Redis: {exc}") from exc
        return [
            Session.from_stored(key, stored, seq, parked)
            for key, (stored, seq), parked in zip(keys, found[::2], found[1::2], strict=True)
        ]

    async def save(self, sessions: Iterable[Session]) -> None:
        """Write what changed in each of ``sessions``; marks them saved."""
        todo = list(sessions)
        if not todo:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for s in todo:
                key = session_key(s.node_key)
                fields: dict[str, str] = {}
                if s.changed:
                    fields["session"] = s.to_json()
                if s.seq_changed and s.seq is not None:
                    fields["seq"] = str(s.seq)
                ttl = self.ttl_s if s.node is not None else min(self.ttl_s, UNBORN_TTL_S)
                if fields:
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, ttl)  # the node was heard from: its session lives on
                parked = parked_key(s.node_key)
                if s.parked_rewrite:  # in one script: never a list cut short by a crash
                    pipe.eval(REWRITE, 1, parked, ttl, *(p.to_json() for p in s.parked))
                elif s.parked_new:
                    pipe.rpush(parked, *(p.to_json() for p in s.parked_new))
                    pipe.expire(parked, ttl)
            await pipe.execute()
        except (RedisError, RedisClusterException, OSError) as exc:
            for s in todo:  # some of the writes may have landed: append nothing twice
                s.parked_rewrite = s.parked_rewrite or bool(s.parked_new)
            raise QueueUnavailable(f"cannot save Sparkplug sessions to Redis: {exc}") from exc
        for s in todo:
            s.changed = s.seq_changed = s.parked_rewrite = False
            s.parked_new.clear()
