"""Where the Sparkplug sessions live in Redis, so that every ingestor replica, and this one after
a restart, knows each edge node's births, aliases, ``seq`` and waiting messages.

Per edge node, hash-tagged by it (one Cluster slot):

- ``conveyor:sparkplug:{<group>/<node>}``: HASH with ``session`` (JSON: bdSeq, online, the
  node's and devices' births, open alerts, why it waits for a rebirth), ``seq``, ``last`` (a
  digest of the last message handled) and ``holder`` (the replica that handles the node);
- ``conveyor:sparkplug:{<group>/<node>}:parked``: LIST of the messages that wait for its
  rebirth (JSON with the payload in base64 and the reason), oldest first.

Both expire ``ttl_s`` after the node's last message (7 days by default; a day for a node that
has not been born), so that edge nodes that are gone, or node ids a misbehaving client made up,
do not stay forever; a node back after that is asked for a rebirth like a new one. (What waits
for a node that is not born within a day expires with it: it could not have been named.)

A replica loads a session by taking the node (:meth:`SessionStore.take`). It takes a node
another live replica holds only once it has received, itself, the last message that one
handled: it then misses none after it. Its writes land only while it still holds the node: once
another has taken it, they are refused, and it forgets the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.exceptions import RedisClusterException, RedisError

from conveyor_ingestor.sparkplug.sessions import Session
from reliable_queue import QueueUnavailable
from reliable_queue.connection import RedisClient, connect
from reliable_queue.keys import PREFIX

DEFAULT_TTL_S = 7 * 24 * 3600
# KEYS[1]: a session, KEYS[2]: its parked list. ARGV[1]: this replica; ARGV[2]: the TTL of a
# session not stored yet; ARGV[3]: 'own' to take the node only if this replica holds it
# already; ARGV[4]: the digest of the last message handled this replica expects ('' none);
# ARGV[5..]: the live replicas ('*': any holder counts as live). A node held by another live
# replica is taken only if its last message is the expected one. Returns {0, holder, last} if
# refused, else {1, session, seq, last, parked...}.
TAKE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
local last = redis.call('HGET', KEYS[1], 'last')
if ARGV[3] == 'own' and holder ~= ARGV[1] then return {0, holder, last} end
if holder and holder ~= ARGV[1] and (ARGV[4] == '' or ARGV[4] ~= last) then
  for i = 5, #ARGV do
    if ARGV[i] == holder or ARGV[i] == '*' then return {0, holder, last} end
  end
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
local s = redis.call('HMGET', KEYS[1], 'session', 'seq')
return {1, s[1], s[2], last, redis.call('LRANGE', KEYS[2], 0, -1)}
"""
# KEYS[1]: a session, KEYS[2]: its parked list. ARGV[1]: this replica; ARGV[2]: the TTL;
# ARGV[3]: the session's JSON, ARGV[4]: seq, ARGV[5]: last ('' each: unchanged); ARGV[6]:
# 'keep', 'append' or 'rewrite' the parked list with ARGV[7..] (in one script: never a list
# cut short by a crash). Returns 0, writing nothing, if this replica no longer holds the node.
SAVE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
for i, field in ipairs({'session', 'seq', 'last'}) do
  if ARGV[2 + i] ~= '' then redis.call('HSET', KEYS[1], field, ARGV[2 + i]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[6] == 'rewrite' then redis.call('DEL', KEYS[2]) end
if ARGV[6] ~= 'keep' then
  for i = 7, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  if #ARGV > 6 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
end
return 1
"""
# KEYS[1]: a session. ARGV[1]: this replica.
LET_GO = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then redis.call('HDEL', KEYS[1], 'holder') end
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

    async def take(
        self,
        node_keys: Iterable[str],
        *,
        replica: str,
        live: Iterable[str],
        expected: dict[str, str] | None = None,
        own: bool = False,
    ) -> dict[str, Taken | Refused]:
        """Take the nodes for ``replica``: each one's stored session, or who holds it. A node
        another of the ``live`` replicas holds (``"*"``: any) is taken only if the last message
        it handled is the one ``expected`` (by digest) for that node. ``own``: only the nodes
        ``replica`` holds already."""
        keys = list(node_keys)
        if not keys:
            return {}
        members = list(live)
        expected = expected or {}
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.eval(
                    TAKE,
                    2,
                    session_key(key),
                    parked_key(key),
                    replica,
                    UNBORN_TTL_S,
                    "own" if own else "take",
                    expected.get(key, ""),
                    *members,
                )
            found = await pipe.execute()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise QueueUnavailable(f"cannot take Sparkplug edge nodes in Redis: {exc}") from exc
        taken: dict[str, Taken | Refused] = {}
        for key, answer in zip(keys, found, strict=True):
            if answer[0] == 0:
                taken[key] = Refused(_text(answer[1]) or "", _text(answer[2]))
                continue
            stored, seq, last, parked = answer[1], answer[2], answer[3], answer[4]
            taken[key] = Taken(Session.from_stored(key, stored, seq, parked), _text(last))
        return taken

    async def let_go(self, node_keys: Iterable[str], *, replica: str) -> None:
        keys = list(node_keys)
        if not keys:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.eval(LET_GO, 1, session_key(key), replica)
            await pipe.execute()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise QueueUnavailable(f"cannot let go of Sparkplug edge nodes: {exc}") from exc

    async def save(
        self, sessions: Iterable[Session], *, replica: str, last: dict[str, str]
    ) -> list[str]:
        """Write what changed in each of ``sessions`` (and the digest of the last message
        handled, ``last``) if ``replica`` still holds its node; marks them saved. Returns the
        nodes it no longer holds (nothing was written for them)."""
        todo = list(sessions)
        if not todo:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for s in todo:
                ttl = self.ttl_s if s.node is not None else min(self.ttl_s, UNBORN_TTL_S)
                if s.parked_rewrite:
                    mode, entries = "rewrite", s.parked
                else:
                    mode, entries = ("append", s.parked_new) if s.parked_new else ("keep", [])
                pipe.eval(
                    SAVE,
                    2,
                    session_key(s.node_key),
                    parked_key(s.node_key),
                    replica,
                    ttl,
                    s.to_json() if s.changed else "",
                    str(s.seq) if s.seq_changed and s.seq is not None else "",
                    last.get(s.node_key, ""),
                    mode,
                    *(p.to_json() for p in entries),
                )
            saved = await pipe.execute()
        except (RedisError, RedisClusterException, OSError) as exc:
            for s in todo:  # some of the writes may have landed: append nothing twice
                s.parked_rewrite = s.parked_rewrite or bool(s.parked_new)
            raise QueueUnavailable(f"cannot save Sparkplug sessions to Redis: {exc}") from exc
        for s in todo:
            s.changed = s.seq_changed = s.parked_rewrite = False
            s.parked_new.clear()
        return [s.node_key for s, ok in zip(todo, saved, strict=True) if not ok]


@dataclass(frozen=True, slots=True)
class Taken:
    """A node just taken: its session as stored, and the digest of the last message handled."""

    session: Session
    last: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A node another live replica holds (or none: ``""``), and the digest of the last message
    it handled."""

    holder: str
    last: str | None


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
