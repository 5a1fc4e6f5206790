"""Every Redis key Conveyor uses, in one place.

All keys of one queue carry the hash tag ``{<queue>}`` so that the queue lives in a single
Redis Cluster slot and every Lua script can touch all of them atomically. The layout and what
each key holds is documented in ``lua/_lib.lua``, next to the code that writes it.

The one global key, :data:`QUEUE_REGISTRY`, is in a slot of its own and is never touched by a
script together with a queue's keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reliable_queue.errors import InvalidQueueName

PREFIX = "conveyor"
QUEUE_REGISTRY = f"{PREFIX}:queues"
"""SET of every queue name that has been used, for ``stats()`` and the CLI."""

DEAD_LETTER_PREFIX = "dead:"
"""Users name a queue's dead letters ``dead:<queue>``; this is that spelling."""

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
"""What a queue name may be (also in the gateway's OpenAPI document)."""
_NAME = re.compile(QUEUE_NAME_PATTERN)


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it can name a queue, else raise :class:`InvalidQueueName`.

    Names are what MessageQueue resources, CLI arguments and Redis hash tags share, so they are
    kept to characters that are safe in all three (no braces, no colons, no spaces).
    """
    if not _NAME.match(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The Redis keys of one queue."""

    queue: str
    pending: str
    delayed: str
    active: str
    jobs: str
    leases: str
    fails: str
    lost: str
    errors: str
    outages: str
    """HASH job id -> when (ms) its handler first postponed it for an outage (:class:`Postpone`)."""
    dead: str
    dead_info: str
    done: str
    counters: str
    config: str
    wake: str
    workers: str
    held: str
    reaper_lock: str
    history: str
    history_coarse: str
    owner: str
    """HASH namespace, name, uid, claimed_at_ms of the one MessageQueue that owns the queue
    (``lua/owner_claim.lua``). Not in :meth:`all`: deleting a queue's data is not giving it up."""

    @classmethod
    def for_queue(cls, queue: str) -> QueueKeys:
        validate_queue_name(queue)
        base = f"{PREFIX}:{{{queue}}}:"
        return cls(
            queue=queue,
            pending=base + "pending",
            delayed=base + "delayed",
            active=base + "active",
            jobs=base + "jobs",
            leases=base + "leases",
            fails=base + "fails",
            lost=base + "lost",
            errors=base + "errors",
            outages=base + "outages",
            dead=base + "dead",
            dead_info=base + "dead_info",
            done=base + "done",
            counters=base + "counters",
            config=base + "config",
            wake=base + "wake",
            workers=base + "workers",
            held=base + "held",
            reaper_lock=base + "reaper_lock",
            history=base + "history",
            history_coarse=base + "history_coarse",
            owner=base + "owner",
        )

    def all(self) -> tuple[str, ...]:
        """Every key of the queue, for deleting a queue's data."""
        return (
            self.pending,
            self.delayed,
            self.active,
            self.jobs,
            self.leases,
            self.fails,
            self.lost,
            self.errors,
            self.outages,
            self.dead,
            self.dead_info,
            self.done,
            self.counters,
            self.config,
            self.wake,
            self.workers,
            self.held,
            self.reaper_lock,
            self.history,
            self.history_coarse,
        )


def queue_from_dead_letter_name(name: str) -> str:
    """Accept ``dead:<queue>`` where a queue name is expected, as users see it written."""
    return name.removeprefix(DEAD_LETTER_PREFIX)
