"""Who owns a queue: one owner per queue name, recorded atomically in Redis.

Queue names are global in a Redis while the things that configure queues (MessageQueue
resources, one per namespace) are not, so two of them could name the same queue and fight over
its policy, its workers and, on delete, its data. The first to claim a queue owns it until it
lets go; everyone else is told who the owner is. The owner is identified by a namespace, a name
and a uid: the uid tells a recreated owner of the same name from the one that claimed, so a
stale owner's claim can be taken over (``replacing=``) and only the claimant can release it.

The claim lives in ``conveyor:{<queue>}:owner`` (a HASH, see ``keys.py``), beside the queue's
other keys, and is written and released by ``lua/owner_claim.lua`` and ``lua/owner_release.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from reliable_queue.connection import RedisClient, redis_boundary
from reliable_queue.errors import UsageError
from reliable_queue.keys import QueueKeys
from reliable_queue.scripting import Scripts


@dataclass(frozen=True, slots=True)
class QueueOwner:
    """The one owner of a queue (for the operator: a MessageQueue)."""

    namespace: str
    name: str
    uid: str
    claimed_at_ms: int = 0
    """When the claim was made (Redis time); 0 in an owner that has not claimed yet."""

    def __post_init__(self) -> None:
        if not self.uid:
            raise UsageError("a queue owner needs a uid")

    def same_as(self, other: QueueOwner | None) -> bool:
        """The same owner (by uid), whenever either was read."""
        return other is not None and other.uid == self.uid

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} (uid {self.uid})"


async def claim(
    scripts: Scripts, queue: str, owner: QueueOwner, *, replacing: str | None = None
) -> QueueOwner:
    """Claim ``queue`` for ``owner`` unless someone holds it; return who owns it now.

    ``replacing``: the uid of an owner known to be gone; its claim is taken over (atomically: only
    if it is still that uid's).
    """
    k = QueueKeys.for_queue(queue)
    with redis_boundary(f"claim queue {queue!r}"):
        raw = await scripts.run(
            "owner_claim",
            (k.owner,),
            (owner.namespace, owner.name, owner.uid, replacing or ""),
        )
    return _owner(raw)


async def release(scripts: Scripts, queue: str, owner: QueueOwner) -> bool:
    """Give up ``owner``'s claim on ``queue``; False if the claim was not (or no longer) its."""
    k = QueueKeys.for_queue(queue)
    with redis_boundary(f"release queue {queue!r}"):
        return bool(await scripts.run("owner_release", (k.owner,), (owner.uid,)))


async def read_owner(redis: RedisClient, queue: str) -> QueueOwner | None:
    """Who owns ``queue``, or None when nobody has claimed it."""
    k = QueueKeys.for_queue(queue)
    with redis_boundary(f"read the owner of queue {queue!r}"):
        raw = await redis.hmget(k.owner, ["namespace", "name", "uid", "claimed_at_ms"])
    return _owner(raw) if raw[2] is not None else None


def _owner(raw: object) -> QueueOwner:
    namespace, name, uid, at = (
        v.decode() if isinstance(v, bytes) else (v or "") for v in cast(list[object], raw)
    )
    return QueueOwner(
        namespace=str(namespace),
        name=str(name),
        uid=str(uid),
        claimed_at_ms=int(str(at)) if str(at).isdigit() else 0,
    )
